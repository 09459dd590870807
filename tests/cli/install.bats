#!/usr/bin/env bats
# `make install` (cmake --install): tools, man pages (sections 1, 5, 7), share/cx and bash
# completion land under PREFIX inside DESTDIR, and an installed tool reads its data from the
# installed share/cx, not from the source tree. Needs the build folder (ctest sets CX_BUILD).

bats_require_minimum_version 1.5.0

setup_file() {
  SRC=${CX_SOURCE:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}
  BUILD=${CX_BUILD:-$SRC/build}
  R=$BATS_FILE_TMPDIR/root
  export SRC BUILD R
  DESTDIR=$R cmake --install "$BUILD" --prefix /opt/cx >"$BATS_FILE_TMPDIR/install.log" 2>&1
}

setup() {
  [ -x "$R/opt/cx/bin/cx-embed" ] || skip "cmake --install failed: $(tail -3 "$BATS_FILE_TMPDIR/install.log")"
}

@test "every tool, its man page, cx-stream.5, cx.7, the recipes and a completion per tool are installed under DESTDIR/PREFIX" {
  for src in "$SRC"/tools/cx-*.cpp; do
    tool=$(basename "$src" .cpp)
    [ -x "$R/opt/cx/bin/$tool" ] || { echo "no bin/$tool"; false; }
    [ -f "$R/opt/cx/share/man/man1/$tool.1" ] || { echo "no man1/$tool.1"; false; }
    [ -f "$R/opt/cx/share/bash-completion/completions/$tool" ] || { echo "no completion for $tool"; false; }
  done
  [ -f "$R/opt/cx/share/man/man5/cx-stream.5" ]
  [ -f "$R/opt/cx/share/man/man7/cx.7" ]
  [ -f "$R/opt/cx/share/cx/recipes/tiny.yaml" ]
  [ -f "$R/opt/cx/share/cx/labeller/mentions.txt" ]
  [ -f "$R/opt/cx/lib/cx/libcx_spm.so" ]
  # Nothing escapes DESTDIR.
  [ -z "$(find "$R" -mindepth 1 -maxdepth 1 ! -name opt)" ]
}

@test "an installed tool reads the installed share/cx (a changed installed recipe shows), without the source tree" {
  sed -i 's/^\(  *base_lr: \).*/\10.000123/' "$R/opt/cx/share/cx/recipes/tiny.yaml"
  grep -q '0.000123' "$R/opt/cx/share/cx/recipes/tiny.yaml"
  run env -u CX_SHARE_DIR "$R/opt/cx/bin/cx-pretrain" info --recipe tiny
  [ "$status" -eq 0 ]
  [[ "$output" == *"0.000123"* ]]
}

@test "the installed cx-report finds its SentencePiece module (lib/cx/libcx_spm.so) without the build tree" {
  printf 'key\treport\n' > "$BATS_TEST_TMPDIR/r.tsv"
  for i in $(seq 1 60); do printf 'k%s\tFINDINGS: The heart size is normal %s. No effusion.\n' "$i" "$i" >> "$BATS_TEST_TMPDIR/r.tsv"; done
  run env -u CX_SPM_LIBRARY "$R/opt/cx/bin/cx-report" tokenizer --vocab 300 -o "$BATS_TEST_TMPDIR/tok" "$BATS_TEST_TMPDIR/r.tsv"
  echo "$output"
  [ "$status" -eq 0 ]
  [ -s "$BATS_TEST_TMPDIR/tok/tokenizer.model" ]
}

@test "the installed completion offers subcommands and each subcommand's options from the tool's --help" {
  run bash -c "PATH='$R/opt/cx/bin':\$PATH; source '$R/opt/cx/share/bash-completion/completions/cx-segment'
    COMP_WORDS=(cx-segment tr); COMP_CWORD=1; _cx_complete; echo \"\${COMPREPLY[*]}\"
    COMP_WORDS=(cx-segment train --va); COMP_CWORD=2; _cx_complete; echo \"\${COMPREPLY[*]}\"
    COMP_WORDS=(cx-eval --boot); COMP_CWORD=1; _cx_complete; echo \"\${COMPREPLY[*]}\""
  [ "$status" -eq 0 ]
  [ "${lines[0]}" = "train" ]
  [ "${lines[1]}" = "--val" ]
  [ "${lines[2]}" = "--bootstrap" ]
}
