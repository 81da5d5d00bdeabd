package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// This file turns bad command lines into one line each: a bad flag, an
// unknown flag (with the nearest known name), an unknown command. Usage
// and configuration errors all exit with status 2 (see exitStatus).

// usageError is a bad command line or setting: one line, exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// parseFlags parses args with fs. With -h it prints fs's usage and returns
// flag.ErrHelp; a bad flag gives a one-line usageError, not the flag
// package's error followed by every flag's help.
func parseFlags(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return err
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		msg = "unknown flag -" + name
		if near := nearest(name, flagNames(fs)); near != "" {
			msg += "; did you mean -" + near + "?"
		}
	}
	// exitStatus prefixes "agent: ", so the command is named once there.
	return usagef("%s: %s (%s -h lists the flags)", strings.TrimPrefix(fs.Name(), "agent "), msg, fs.Name())
}

// commandNames are the sub-commands usageText lists (a line indented by
// two spaces starts with one), so that a command added there is offered
// by "did you mean" too.
func commandNames() []string {
	var names []string
	for _, line := range strings.Split(usageText, "\n") {
		if rest, ok := strings.CutPrefix(line, "  "); ok && rest != "" && rest[0] != ' ' {
			names = append(names, strings.Fields(rest)[0])
		}
	}
	return names
}

// flagNames are the names of fs's flags.
func flagNames(fs *flag.FlagSet) []string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}

// nearest is the candidate closest to s by edit distance, if it is close
// enough to be a likely misspelling (at most 2 edits away, or a third of
// its length for a longer one); "" if none is.
func nearest(s string, candidates []string) string {
	best, bestDist := "", -1
	for _, c := range candidates {
		d := levenshtein(strings.ToLower(s), strings.ToLower(c))
		if bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	if bestDist < 0 || bestDist > max(2, len(best)/3) {
		return ""
	}
	return best
}

// levenshtein is the number of single-character insertions, deletions and
// substitutions that turn a into b.
func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
