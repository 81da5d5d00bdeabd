package agent

import (
	"regexp"
	"strings"
	"testing"
)

// The page must work on an air-gapped machine and under its own
// Content-Security-Policy: nothing is loaded from anywhere but this agent.
func TestTheUIPageLoadsNothingFromElsewhere(t *testing.T) {
	page := string(uiPage)
	// (A link to the leader's page is not an asset: it loads on a click.)
	external := regexp.MustCompile(`(?i)\bsrc\s*=|<link\b|@import|url\(`)
	if m := external.FindString(page); m != "" {
		t.Fatalf("the page loads an external asset: %q", m)
	}
	// What it shows comes from the agent's own API.
	for _, path := range []string{"/v1/status", "/v1/members", "/v1/partitions?stale=true", "/v1/events", "/v1/plan"} {
		if !strings.Contains(page, `"`+path+`"`) {
			t.Errorf("the page does not read %s", path)
		}
	}
}
