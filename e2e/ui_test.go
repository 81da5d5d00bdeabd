package e2e

import (
	"context"
	"flag"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/steward-dev/steward/localcluster"
)

// The /ui page as an operator sees it: headless Chromium loads it from a
// real agent, runs its scripts, and the test reads the DOM it rendered.

var uiScreenshot = flag.String("ui.screenshot", "", "TestTheUIShowsAFailureThePromotionsAndALostQuorum saves a screenshot of the page after the failure to this PNG file (docs/ui-failure.png)")

// uiPage is what one rendering of /ui showed.
type uiPage struct {
	dom string
	// states are the members' rows: node ID -> the state shown.
	states map[string]string
	// primaries are the partition map's cells: partition -> the primary
	// named and whether the page shows it serving.
	primaries map[int]cellPrimary
	// counts are the summary tiles: tile ID -> the number shown.
	counts map[string]int
}

type cellPrimary struct {
	node    string
	serving bool
}

var (
	uiMemberRow = regexp.MustCompile(`data-member="([^"]+)" data-status="[^"]*" data-state="([^"]+)"`)
	uiCell      = regexp.MustCompile(`data-partition="(\d+)" data-primary="([^"]*)" data-primary-serving="(true|false)"`)
	uiTile      = regexp.MustCompile(`class="tile[^"]*" id="([a-z-]+)" data-count="(\d+)"`)
	uiPromotion = regexp.MustCompile(`data-action="promote" data-partition="(\d+)"`)
)

// renderUI loads url in headless Chromium and parses what the page shows.
func renderUI(browser *localcluster.Browser, url string) (uiPage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dom, err := browser.DumpDOM(ctx, url, 2*time.Second)
	if err != nil {
		return uiPage{}, err
	}
	if !strings.Contains(dom, `<body data-loaded="yes"`) {
		return uiPage{}, fmt.Errorf("the page did not render the API's answers: %s", dom[strings.Index(dom, "<body"):][:min(400, len(dom)-strings.Index(dom, "<body"))])
	}
	p := uiPage{dom: dom, states: map[string]string{}, primaries: map[int]cellPrimary{}, counts: map[string]int{}}
	for _, m := range uiMemberRow.FindAllStringSubmatch(dom, -1) {
		p.states[m[1]] = m[2]
	}
	for _, m := range uiCell.FindAllStringSubmatch(dom, -1) {
		id, _ := strconv.Atoi(m[1])
		p.primaries[id] = cellPrimary{node: m[2], serving: m[3] == "true"}
	}
	for _, m := range uiTile.FindAllStringSubmatch(dom, -1) {
		p.counts[m[1]], _ = strconv.Atoi(m[2])
	}
	return p, nil
}

// promotedIn lists the partitions the page shows promoted by the decision
// of type event (the newest such decision).
func (p uiPage) promotedIn(event string) []int {
	start := strings.Index(p.dom, `data-event="`+event+`"`)
	if start < 0 {
		return nil
	}
	rest := p.dom[start+1:]
	if end := strings.Index(rest, `data-event="`); end >= 0 {
		rest = rest[:end]
	}
	var out []int
	for _, m := range uiPromotion.FindAllStringSubmatch(rest, -1) {
		id, _ := strconv.Atoi(m[1])
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// noneServedBy is an error naming the cells that show gone as a serving
// primary.
func (p uiPage) noneServedBy(gone string) error {
	for id, c := range p.primaries {
		if c.node == gone && c.serving {
			return fmt.Errorf("partition %d shows %s as its serving primary", id, gone)
		}
	}
	return nil
}

// TestTheUIShowsAFailureThePromotionsAndALostQuorum: three agents; the
// page on the leader shows all well; a follower is SIGKILLed and within
// seconds the page shows it failed and not serving, every partition
// under-replicated, and the leader's decision promoting the victim's
// primaries; then the leader is killed too and the last agent's page shows
// the quorum-lost banner and the dead leader, still named primary in the
// table nobody can change, as not serving.
func TestTheUIShowsAFailureThePromotionsAndALostQuorum(t *testing.T) {
	browser, err := localcluster.FindBrowser(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(t)
	const partitions = 12
	nodes := formCluster(t, c, 3, "-partitions", strconv.Itoa(partitions))
	leader := leaderOf(t, nodes)
	leaderPage := "http://" + leader.APIAddr() + "/ui"
	eventually(t, 30*time.Second, "the leader's page showing three members alive and nothing under-replicated", func() error {
		p, err := renderUI(browser, leaderPage)
		if err != nil {
			return err
		}
		if p.counts["members-alive"] != 3 || p.counts["under-replicated"] != 0 || len(p.primaries) != partitions {
			return fmt.Errorf("the page shows members %v, tiles %v, %d cells", p.states, p.counts, len(p.primaries))
		}
		return nil
	})

	victim := without(nodes, leader)[0]
	table, err := leader.Partitions()
	if err != nil {
		t.Fatal(err)
	}
	var victimPrimaries []int
	for _, p := range table.Partitions {
		if p.Primary == victim.ID {
			victimPrimaries = append(victimPrimaries, p.ID)
		}
	}
	victim.Kill()
	killed := time.Now()
	eventually(t, 30*time.Second, "the API naming the victim failed", func() error {
		if st, err := leader.MemberStatus(victim.ID); err != nil || st != "failed" {
			return fmt.Errorf("status %q, %v", st, err)
		}
		return nil
	})
	apiTook := time.Since(killed)
	eventually(t, 30*time.Second, "the page showing the failure and the promotions", func() error {
		p, err := renderUI(browser, leaderPage)
		if err != nil {
			return err
		}
		if p.states[victim.ID] != "failed" {
			return fmt.Errorf("the page shows %s as %q", victim.ID, p.states[victim.ID])
		}
		// Three agents, three copies: every partition had one on the victim.
		if p.counts["under-replicated"] != partitions || p.counts["members-failed"] != 1 {
			return fmt.Errorf("tiles %v: want %d under-replicated and 1 failed", p.counts, partitions)
		}
		if err := p.noneServedBy(victim.ID); err != nil {
			return err
		}
		if got := p.promotedIn("member.failed"); !slices.Equal(got, victimPrimaries) {
			return fmt.Errorf("the decision member.failed lists promotions of %v, want the victim's primaries %v", got, victimPrimaries)
		}
		return nil
	})
	t.Logf("SIGKILL of %s: the API said failed after %s, the page showed it with the promotions after %s",
		victim.ID, apiTook.Round(100*time.Millisecond), time.Since(killed).Round(100*time.Millisecond))
	if *uiScreenshot != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := browser.Screenshot(ctx, leaderPage, *uiScreenshot, 1100, 1400, 2*time.Second)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}

	last := without(nodes, victim, leader)[0]
	leader.Kill()
	lastPage := "http://" + last.APIAddr() + "/ui"
	eventually(t, 30*time.Second, "the last agent's page showing the lost quorum and the dead leader not serving", func() error {
		p, err := renderUI(browser, lastPage)
		if err != nil {
			return err
		}
		if !strings.Contains(p.dom, `id="quorum-lost"`) {
			return fmt.Errorf("no quorum-lost banner; members %v", p.states)
		}
		if p.states[leader.ID] == "alive" || p.states[leader.ID] == "suspect" {
			return fmt.Errorf("the page shows the dead leader %s as %q", leader.ID, p.states[leader.ID])
		}
		if err := p.noneServedBy(leader.ID); err != nil {
			return err
		}
		named := 0
		for _, c := range p.primaries {
			if c.node == leader.ID {
				named++
			}
		}
		if named == 0 || p.counts["without-primary"] != named {
			return fmt.Errorf("%d cells name the dead leader primary, the tile says %d without a primary in service", named, p.counts["without-primary"])
		}
		return nil
	})
}
