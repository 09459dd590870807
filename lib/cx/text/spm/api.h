/* The C interface of libcx_spm (lib/cx/text/spm/shim.cpp): SentencePiece's processor and trainer
 * as cx uses them. Strings cross as (pointer, length); results come back through callbacks, so no
 * memory or C++ object crosses the library boundary. Functions returning int give 0 (or a value)
 * on success and -1 on failure with the message in err (NUL-terminated, at most cap bytes). */
#ifndef CX_TEXT_SPM_API_H
#define CX_TEXT_SPM_API_H
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CXSPM_API_VERSION 1

typedef void (*cxspm_push_id)(void* ctx, int id);
typedef void (*cxspm_push_bytes)(void* ctx, const char* data, size_t size);

typedef struct cxspm_api {
  int version;
  void* (*load)(const char* model_bytes, size_t size, char* err, size_t cap);
  void (*release)(void* processor);
  int (*encode)(void* processor, const char* text, size_t size, cxspm_push_id push, void* ctx, char* err, size_t cap);
  int (*encode_pieces)(void* processor, const char* text, size_t size, cxspm_push_bytes push, void* ctx, char* err, size_t cap);
  int (*decode)(void* processor, const int* ids, size_t n, cxspm_push_bytes push, void* ctx, char* err, size_t cap);
  int (*piece_size)(void* processor);
  int (*piece_to_id)(void* processor, const char* piece, size_t size);
  void (*id_to_piece)(void* processor, int id, cxspm_push_bytes push, void* ctx);
  int (*is_unknown)(void* processor, int id);
  float (*score)(void* processor, int id);
  int (*train)(const char* const* keys, const char* const* values, size_t nargs, const char* const* lines,
               const size_t* lengths, size_t nlines, unsigned seed, cxspm_push_bytes push_model, void* ctx, char* err,
               size_t cap);
} cxspm_api;

const cxspm_api* cxspm_get_api(void);

#ifdef __cplusplus
}
#endif
#endif
