# Before the README's dead-letter queue commands: three calls that failed for good
# (their runs completed, told the CRM was unavailable), in $ID, $ID2 and $ID3; then
# the CRM comes back, so `dlq retry` succeeds.
for customer in acme globex initech; do
    phalanx run examples.readme.crm:plan_of --input "{\"customer\": \"$customer\"}" >/dev/null
done
entries() {
    phalanx dlq list --tool crm_lookup --json | python -c 'import json, sys
print(" ".join(e["id"] for e in json.load(sys.stdin)))'
}
read -r ID ID2 ID3 <<< "$(entries)"
export CRM_UP=1
