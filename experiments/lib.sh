# Shared by the experiment scripts (sourced, not run).

# acc FILE LABEL: the accuracy column of `sitfer eval`'s table row `| LABEL | x |`.
acc() { grep -F "| $2 |" "$1" | head -1 | awk -F'|' '{gsub(/ /,"",$3); print $3}'; }
