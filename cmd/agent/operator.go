package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"

	"github.com/steward-dev/steward/agent"
	"github.com/steward-dev/steward/failover"
)

// The operator's sub-commands: agent move and agent replace.

// parseOperatorFlags parses the client flags plus extra ones (declared by
// declare on the flag set) around positional arguments, which may come
// before or after the flags. It returns the positional arguments.
func parseOperatorFlags(name string, args []string, stderr io.Writer, declare func(fs *flag.FlagSet)) (clientFlags, []string, error) {
	var positional []string
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		positional, args = append(positional, args[0]), args[1:]
	}
	fs := newFlagSet(name, stderr)
	var cf clientFlags
	cf.register(fs)
	declare(fs)
	if err := parseFlags(fs, args); err != nil {
		return cf, nil, err
	}
	positional = append(positional, fs.Args()...)
	return cf, positional, cf.resolve()
}

// cmdMove is `agent move P NODE [-primary]` and `agent move P [NODE]
// -unpin`: pin partition P on NODE (the planner moves a copy there, add
// before remove, and keeps it there), as primary with -primary; -unpin
// gives the partition back to the planner.
func cmdMove(args []string, stdout, stderr io.Writer) error {
	var primary, unpin bool
	cf, pos, err := parseOperatorFlags("move", args, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&primary, "primary", false, "make NODE the partition's primary, not only a holder")
		fs.BoolVar(&unpin, "unpin", false, "remove the pin of NODE (of every node if NODE is not given)")
	})
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 || (len(pos) == 1 && !unpin) {
		return usagef("move: agent move PARTITION NODE [-primary], or agent move PARTITION [NODE] -unpin")
	}
	p, err := strconv.Atoi(pos[0])
	if err != nil || p < 0 {
		return usagef("move: partition %q is not a partition number", pos[0])
	}
	if primary && unpin {
		return usagef("move: -primary and -unpin do not go together")
	}
	req := agent.MoveRequest{Primary: primary, Unpin: unpin}
	if len(pos) == 2 {
		req.Node = pos[1]
	}
	var out struct {
		Pins []failover.Pin `json:"pins"`
	}
	if err := cf.post("/v1/partitions/"+strconv.Itoa(p)+"/move", req, &out); err != nil {
		return err
	}
	switch {
	case unpin && req.Node == "":
		fmt.Fprintf(stdout, "partition %d unpinned: the planner places it again\n", p)
	case unpin:
		fmt.Fprintf(stdout, "partition %d unpinned from %s\n", p, req.Node)
	case primary:
		fmt.Fprintf(stdout, "partition %d pinned on %s as primary: the planner moves it there and keeps it there until agent move %d -unpin\n", p, req.Node, p)
	default:
		fmt.Fprintf(stdout, "partition %d pinned on %s: the planner moves a copy there and keeps it there until agent move %d -unpin\n", p, req.Node, p)
	}
	return nil
}

// cmdReplace is `agent replace OLD NEW`: move every copy of OLD to NEW,
// add before remove, then OLD leaves; `agent replace OLD -cancel` calls it
// off.
func cmdReplace(args []string, stdout, stderr io.Writer) error {
	var cancel bool
	cf, pos, err := parseOperatorFlags("replace", args, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&cancel, "cancel", false, "call off the replacement of OLD (copies already moved stay)")
	})
	if err != nil {
		return err
	}
	if cancel && len(pos) != 1 || !cancel && len(pos) != 2 {
		return usagef("replace: agent replace OLD NEW, or agent replace OLD -cancel")
	}
	req := agent.ReplaceRequest{}
	if !cancel {
		req.By = pos[1]
	}
	var out struct {
		CopiesToMove int `json:"copies_to_move"`
	}
	if err := cf.post("/v1/members/"+url.PathEscape(pos[0])+"/replace", req, &out); err != nil {
		return err
	}
	if cancel {
		fmt.Fprintf(stdout, "the replacement of %s is called off\n", pos[0])
		return nil
	}
	fmt.Fprintf(stdout, "%s is being replaced by %s: %d copies move (add before remove), then %s leaves; follow it with agent members\n", pos[0], req.By, out.CopiesToMove, pos[0])
	return nil
}
