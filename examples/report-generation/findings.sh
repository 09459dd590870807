#!/bin/sh
# findings.sh OUT: the phantom check of report-generation. Sets the decoder's reports
# (OUT/generated.tsv) beside the retrieval baseline's (OUT/retrieved.tsv) and a constant report (the
# most frequent training report of OUT/train.emb.cx, for every record), all scored by cx-eval
# against OUT/references.tsv, writes the table OUT/findings.tsv and prints it, then checks:
#   BLEU-4            generated > retrieved, and generated > constant + 0.02
#   F1 Cardiomegaly   generated >= 0.7, and generated > retrieved + 0.2
#   F1 macro          generated > constant + 0.1
# The heart's size is the finding the tiny random-init encoder of `make test` shows (a linear probe
# on its tokens: AUROC about 0.9 for cardiomegaly, 0.5 to 0.7 for the others), so it is the finding
# the reports are held to. The macro F1 is over the labels with positives in the test set.
# SECTION (default findings) must be the section the decoder was trained on.
set -eu
[ $# -eq 1 ] || { echo "usage: findings.sh OUT" >&2; exit 2; }
out=$1
section=${SECTION:-findings}
cx-report references --section "$section" -q "$out/train.emb.cx" | tail -n +2 | cut -f2 | sort | uniq -c |
  sort -rn | head -1 | sed 's/^ *[0-9]* //' > "$out/constant.txt"
{
  printf 'key\treport\n'
  tail -n +2 "$out/references.tsv" | cut -f1 | while IFS= read -r k; do printf '%s\t%s\n' "$k" "$(cat "$out/constant.txt")"; done
} > "$out/constant.tsv"

printf 'model\tbleu-4\tf1-cardiomegaly\tf1-macro\n' > "$out/findings.tsv.tmp"
for m in generated retrieved constant; do
  b=$(cx-eval bleu --bootstrap 0 -q "$out/references.tsv" "$out/$m.tsv" | awk -F '\t' '$1 == "bleu-4" { print $5 }')
  f=$(cx-eval chexpert-f1 --bootstrap 0 -q "$out/references.tsv" "$out/$m.tsv" |
      awk -F '\t' '$2 == "Cardiomegaly" { c = $5 } $2 == "macro" { a = $5 } END { print c "\t" a }')
  printf '%s\t%s\t%s\n' "$m" "$b" "$f" >> "$out/findings.tsv.tmp"
done
mv "$out/findings.tsv.tmp" "$out/findings.tsv"
cat "$out/findings.tsv"

awk -F '\t' '
  NR > 1 { b[$1] = $2; c[$1] = $3; a[$1] = $4 }
  function need(ok, what) { if (!ok) { print "findings: " what > "/dev/stderr"; bad = 1 } }
  END {
    need(b["generated"] > b["retrieved"], "BLEU-4 " b["generated"] " is not above the retrieval baseline'"'"'s " b["retrieved"])
    need(b["generated"] > b["constant"] + 0.02, "BLEU-4 " b["generated"] " is not 0.02 above the constant report'"'"'s " b["constant"])
    need(c["generated"] >= 0.7, "Cardiomegaly F1 " c["generated"] " is below 0.7")
    need(c["generated"] > c["retrieved"] + 0.2, "Cardiomegaly F1 " c["generated"] " is not 0.2 above the retrieval baseline'"'"'s " c["retrieved"])
    need(a["generated"] > a["constant"] + 0.1, "macro F1 " a["generated"] " is not 0.1 above the constant report'"'"'s " a["constant"])
    if (bad) exit 1
    print "findings: the decoder states the heart'"'"'s size from the image and beats both baselines on BLEU-4"
  }' "$out/findings.tsv"
