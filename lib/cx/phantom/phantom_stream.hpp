#pragma once
// Phantoms as cx stream records (man 1 cx-phantom): key "phantom-NNNNNN", fields json, png,
// mask.png, txt. write_phantoms renders on several threads and writes in index order, so the
// bytes out depend on the seed and count only, never on the thread count.
#include <cstdint>
#include <functional>

#include <nlohmann/json.hpp>

#include "cx/io/stream.hpp"
#include "cx/phantom/phantom.hpp"

namespace cx::phantom {

// The record of one rendered phantom (PNGs encoded here).
io::Record phantom_record(const Phantom& phantom, std::int64_t index);

// The stream header for a phantom stream: fields, labels, label coding and the options used
// (provenance is the caller's).
nlohmann::json phantom_stream_header(const PhantomOptions& options, std::uint64_t seed, std::int64_t count);

// Renders records 0..count-1 on `threads` workers (<= 1: on this thread) and writes them to
// `writer` in order; `written` is called on this thread after each record. At most 2 * threads
// records wait in memory. A worker's exception stops the run and is rethrown here.
void write_phantoms(io::StreamWriter& writer, const PhantomOptions& options, std::uint64_t seed, std::int64_t count,
                    int threads, const std::function<void(std::int64_t)>& written = {});

}  // namespace cx::phantom
