#!/usr/bin/env bats
# The manual pages against the tools: every tool has a page (section 1) with the sections a user
# looks for, and every option that a tool's --help names, for the tool and for each subcommand,
# is documented on its page. Options are read from CLI11's help layout ("  -o,--output FILE ...");
# a page documents --name when its text (roff's \- read as -, font escapes dropped) holds "--name" not
# followed by more of a name.
# Self-contained (PATH must hold the build's bin; ctest sets it).

bats_require_minimum_version 1.5.0

setup() {
  SRC=${CX_SOURCE:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}
}

# The long options a help text lists (one per line, without the dashes).
help_options() {
  sed -n 's/^  *\(-[A-Za-z0-9],\)\{0,1\}--\([A-Za-z0-9][A-Za-z0-9-]*\).*/\2/p'
}

# The subcommands a help text lists.
help_subcommands() {
  sed -n '/^Subcommands:/,/^$/p' | sed -n 's/^  \([a-z][a-z0-9-]*\) .*/\1/p'
}

@test "every tool has a man page with NAME, SYNOPSIS, OPTIONS or per-subcommand options, EXIT STATUS, EXAMPLES, SEE ALSO" {
  missing=""
  for src in "$SRC"/tools/cx-*.cpp; do
    tool=$(basename "$src" .cpp)
    page="$SRC/man/$tool.1"
    if [ ! -f "$page" ]; then missing+=" $tool(no page)"; continue; fi
    for section in NAME SYNOPSIS "EXIT STATUS" EXAMPLES "SEE ALSO"; do
      grep -q "^\.SH \"\{0,1\}$section" "$page" || missing+=" $tool($section)"
    done
    grep -q '^\.SH .*OPTIONS' "$page" || missing+=" $tool(OPTIONS)"
  done
  [ -z "$missing" ] || { echo "missing:$missing"; false; }
}

@test "every option in every tool's --help (each subcommand's too) is documented on the tool's page" {
  undocumented=""
  for src in "$SRC"/tools/cx-*.cpp; do
    tool=$(basename "$src" .cpp)
    page="$SRC/man/$tool.1"
    [ -f "$page" ] || continue
    text=$(sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' "$page")
    helps=("$($tool --help)")
    for sub in $($tool --help | help_subcommands); do
      helps+=("$($tool "$sub" --help)")
    done
    for h in "${helps[@]}"; do
      for opt in $(printf '%s\n' "$h" | help_options | sort -u); do
        [ "$opt" = help ] && continue
        printf '%s\n' "$text" | grep -Eq -- "--$opt([^A-Za-z0-9-]|\$)" || undocumented+=" $tool:--$opt"
      done
    done
  done
  [ -z "$undocumented" ] || { echo "undocumented:$undocumented"; false; }
}

@test "the stream format and the overview have their pages (cx-stream.5, cx.7), and cx.7 names every tool" {
  [ -f "$SRC/man/cx-stream.5" ]
  [ -f "$SRC/man/cx.7" ]
  for src in "$SRC"/tools/cx-*.cpp; do
    tool=$(basename "$src" .cpp)
    grep -q -- "$tool" "$SRC/man/cx.7" || { echo "cx.7 does not name $tool"; false; }
  done
}

@test "--help promises exit 3 (partial success) exactly in the tools that have --skip-bad" {
  wrong=""
  for src in "$SRC"/tools/cx-*.cpp; do
    tool=$(basename "$src" .cpp)
    all=$($tool --help)
    for sub in $($tool --help | help_subcommands); do all+=$'\n'"$($tool "$sub" --help)"; done
    has=no
    printf '%s\n' "$all" | help_options | grep -qx skip-bad && has=yes
    promises=no
    $tool --help | grep -q "3 partial success" && promises=yes
    [ "$has" = "$promises" ] || wrong+=" $tool(--skip-bad $has, exit 3 named $promises)"
  done
  [ -z "$wrong" ] || { echo "$wrong"; false; }
}
