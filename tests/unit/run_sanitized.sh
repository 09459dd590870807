#!/bin/sh
# Runs one sanitizer test binary for ctest. A sanitizer that cannot start on this kernel (TSan's
# shadow memory and a kernel with wide mmap randomisation) is tried again without address-space
# randomisation, and skipped (exit 77, ctest's SKIP_RETURN_CODE) when that is not allowed either:
# a machine's kernel is not a defect of cx. Any other outcome is the test's own.
cannot_start() {
  case $1 in
    *"unexpected memory mapping"*|*"Shadow memory range interleaves"*|*"failed to allocate"*"shadow"*) return 0 ;;
  esac
  return 1
}
out=$("$@" 2>&1)
rc=$?
if cannot_start "$out"; then
  out=$(setarch "$(uname -m)" -R "$@" 2>&1)
  rc=$?
  if [ $rc -ne 0 ] && { cannot_start "$out" || case $out in setarch:*) true ;; *) false ;; esac; }; then
    printf '%s\n' "$out" | tail -n 3
    echo "the sanitizer cannot start on this kernel: skipped"
    exit 77
  fi
fi
printf '%s\n' "$out"
exit $rc
