# Writes DST (cx/version.hpp) with the git revision; leaves the file untouched when nothing changed,
# so a commit does not rebuild the world.
execute_process(COMMAND git -C "${SRC}" describe --always --dirty --abbrev=10
                OUTPUT_VARIABLE rev OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR rev STREQUAL "")
  set(rev "unknown")
endif()
set(content "#pragma once\n#define CX_VERSION \"${VERSION}\"\n#define CX_GIT_REVISION \"${rev}\"\n")
if(EXISTS "${DST}")
  file(READ "${DST}" old)
else()
  set(old "")
endif()
if(NOT old STREQUAL content)
  file(WRITE "${DST}" "${content}")
endif()
