# Shared by the experiment scripts (sourced, not run).

# acc FILE LABEL: the accuracy column of `sitfer eval`'s table row `| LABEL | x |`.
acc() { grep -F "| $2 |" "$1" | head -1 | awk -F'|' '{gsub(/ /,"",$3); print $3}'; }

# gains SUMMARY COLUMN: per variant of adapt.sh's summary.tsv, the mean ± sample sd of COLUMN
# (p_sem, p_ins or p_hat, in points) over the splits, its mean gain over `source` on the same
# splits, and on how many splits it beats `source`.
gains() {
  awk -F'\t' -v col="$2" '
    NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
    { v = 100 * $c; x[$4, $1] = v; if (!($4 in seen)) { seen[$4] = 1; order[++nv] = $4 }
      if (!($1 in sp)) { sp[$1] = 1; splits[++ns] = $1 } }
    END {
      printf "%-10s %6s %6s %8s %6s\n", "variant", "mean", "sd", "gain", "wins"
      for (k = 1; k <= nv; k++) {
        v = order[k]; s = 0; s2 = 0; g = 0; w = 0
        for (j = 1; j <= ns; j++) { a = x[v, splits[j]]; s += a; s2 += a * a; d = a - x["source", splits[j]]; g += d; w += (d > 0) }
        m = s / ns; sd = ns > 1 ? sqrt((s2 - ns * m * m) / (ns - 1)) : 0
        printf "%-10s %6.2f %6.2f %+8.2f %3d/%d\n", v, m, sd, g / ns, w, ns
      }
    }' "$1"
}
