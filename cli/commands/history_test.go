package commands_test

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestHistoryAndRollback: history lists apply's changes newest first as a table and as JSON
// (revision, who, time, change: issue 10's contract); rollback --dry-run prints the plan and
// writes nothing; rollback restores the old weight as a new revision and prints like apply;
// a revision not in the history is refused, naming the ones that are.
func TestHistoryAndRollback(t *testing.T) {
	srv, addr := start(t)
	manifest, err := os.ReadFile(wmsFile)
	if err != nil {
		t.Fatal(err)
	}
	r1 := srv.revision(t) + 1
	expect(t, lvsctl(t, addr, "", "apply", "-f", wmsFile), 0,
		fmt.Sprintf("cluster/wms created (revision %d)\ngroup/edge-1 created (revision %[1]d)\n", r1), "")
	edited := strings.Replace(string(manifest), "{address: 198.51.100.1, weight: 100}", "{address: 198.51.100.1, weight: 5}", 1)
	r2 := r1 + 1
	expect(t, lvsctl(t, addr, edited, "apply", "-f", "-"), 0, fmt.Sprintf("cluster/wms configured (revision %d)\ngroup/edge-1 unchanged (revision %d)\n", r2, r1), "")

	// The time column is now: checked as a time, then blanked for the comparison.
	table := lvsctl(t, addr, "", "history", "cluster", "wms")
	when := regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`)
	if table.code != 0 || len(when.FindAllString(table.out, -1)) != 2 {
		t.Fatalf("history table: %+v", table)
	}
	want := strings.Join([]string{
		"REVISION  WHEN                      WHO      ACTION   CHANGES",
		fmt.Sprintf("%d         TIME  unknown  updated  real 198.51.100.1 weight: 100 -> 5", r2),
		fmt.Sprintf("%d         TIME  unknown  created  group edge-1, fwmark 1, wlc, 3 real servers, 1 VIPs x 5 port ranges", r1),
		"",
	}, "\n")
	if got := when.ReplaceAllString(table.out, "TIME"); got != want {
		t.Errorf("history table:\n%s\nwant:\n%s", got, want)
	}

	js := lvsctl(t, addr, "", "history", "cluster", "wms", "-o", "json", "--limit", "1")
	var entries []map[string]any
	if err := json.Unmarshal([]byte(js.out), &entries); err != nil || js.code != 0 {
		t.Fatalf("history -o json: %v %+v", err, js)
	}
	if len(entries) != 1 {
		t.Fatalf("--limit 1 printed %d entries", len(entries))
	}
	e := entries[0]
	if e["revision"] != float64(r2) || e["who"] != "unknown" || e["change"] != "updated: real 198.51.100.1 weight: 100 -> 5" || !when.MatchString(fmt.Sprint(e["time"])) {
		t.Errorf("entry: %v", e)
	}
	if obj, _ := e["object"].(map[string]any); obj["name"] != "wms" || obj["kind"] != "Cluster" {
		t.Errorf("entry's object: %v", e["object"])
	}

	expect(t, lvsctl(t, addr, "", "rollback", "cluster", "wms", "--to", fmt.Sprint(r1), "--dry-run"), 0,
		"cluster/wms would be configured\n  real 198.51.100.1 weight: 5 -> 100\n"+
			"group edge-1 (directors dir-a) would:\n  cluster wms: real 198.51.100.1 weight: 5 -> 100\n", "")
	if rev := srv.revision(t); rev != r2 {
		t.Errorf("dry run wrote: revision %d, want %d", rev, r2)
	}
	r3 := r2 + 1
	expect(t, lvsctl(t, addr, "", "rollback", "cluster", "wms", "--to", fmt.Sprint(r1)), 0, fmt.Sprintf("cluster/wms configured (revision %d)\n", r3), "")
	if got := lvsctl(t, addr, "", "get", "cluster", "wms", "-o", "yaml"); !strings.Contains(got.out, "{address: 198.51.100.1, weight: 100}") {
		t.Errorf("after rollback, get -o yaml:\n%s", got.out)
	}
	if got := lvsctl(t, addr, "", "history", "cluster", "wms", "--limit", "1"); !strings.Contains(got.out, fmt.Sprintf("%d ", r3)) || !strings.Contains(got.out, fmt.Sprintf("rolled back to %d  real 198.51.100.1 weight: 5 -> 100", r1)) {
		t.Errorf("history after rollback:\n%s", got.out)
	}

	expect(t, lvsctl(t, addr, "", "rollback", "cluster", "wms", "--to", "999"), 1, "",
		fmt.Sprintf("error: cluster \"wms\": revision not in history: 999; its history holds revisions %d, %d, %d (lvsctl history cluster wms)\n", r3, r2, r1))
	expect(t, lvsctl(t, addr, "", "rollback", "cluster", "wms"), 1, "", "error: --to: required: a revision that lvsctl history cluster wms lists\n")
	expect(t, lvsctl(t, addr, "", "history", "clustr", "wms"), 1, "", "error: lvsctl history: unknown kind \"clustr\" (one of: cluster, group)\n")
}
