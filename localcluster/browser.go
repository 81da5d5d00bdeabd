package localcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Browser drives headless Chromium (Debian's `chromium` package) from the
// command line: each call is one run of the browser that loads a page, lets
// its scripts run for a budget of virtual time, and prints the DOM or saves
// a screenshot. No DevTools protocol client is needed for that, and no Go
// dependency.
type Browser struct {
	// Bin is the chromium binary.
	Bin string
	// Dir holds one fresh profile (--user-data-dir) per run.
	Dir string
}

// chromiumNames are the names Debian and others install Chromium under.
var chromiumNames = []string{"chromium", "chromium-browser", "google-chrome"}

// FindBrowser finds a Chromium binary on PATH; dir is where the runs'
// profiles go (a test's temp dir). Its error says how to install one.
func FindBrowser(dir string) (*Browser, error) {
	for _, name := range chromiumNames {
		if bin, err := exec.LookPath(name); err == nil {
			return &Browser{Bin: bin, Dir: dir}, nil
		}
	}
	return nil, fmt.Errorf("no Chromium on PATH (looked for %s): install it, e.g. `apt-get install -y chromium`", strings.Join(chromiumNames, ", "))
}

// DumpDOM loads url, runs its scripts for budget of virtual time, and
// returns the DOM as HTML.
func (b *Browser) DumpDOM(ctx context.Context, url string, budget time.Duration) (string, error) {
	out, err := b.run(ctx, "--virtual-time-budget="+strconv.FormatInt(budget.Milliseconds(), 10), "--dump-dom", url)
	return string(out), err
}

// Screenshot loads url in a window of width x height pixels, runs its
// scripts for budget of virtual time and saves a PNG to path.
func (b *Browser) Screenshot(ctx context.Context, url, path string, width, height int, budget time.Duration) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	_, err = b.run(ctx, "--virtual-time-budget="+strconv.FormatInt(budget.Milliseconds(), 10),
		fmt.Sprintf("--window-size=%d,%d", width, height), "--hide-scrollbars", "--screenshot="+abs, url)
	if err != nil {
		return err
	}
	if _, err := os.Stat(abs); err != nil {
		return fmt.Errorf("chromium wrote no screenshot: %w", err)
	}
	return nil
}

// run runs chromium once with a fresh profile and returns its standard
// output. The browser and the helpers it forks run in a process group of
// their own, which is killed when ctx ends first: only what this run
// started is stopped.
func (b *Browser) run(ctx context.Context, args ...string) ([]byte, error) {
	profile, err := os.MkdirTemp(b.Dir, "chromium-profile-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(profile)
	all := []string{"--headless", "--disable-gpu", "--no-first-run", "--disable-extensions",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + profile}
	if os.Geteuid() == 0 {
		// Chromium's sandbox refuses to run as root.
		all = append(all, "--no-sandbox")
	}
	cmd := exec.Command(b.Bin, append(all, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// The group's ID is the browser's PID (Setpgid).
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return nil, fmt.Errorf("chromium %s: %w", args[len(args)-1], ctx.Err())
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("chromium %s: %v; stderr: %s", args[len(args)-1], err, lastLines(stderr.String(), 5))
		}
		return nil, err
	}
	return stdout.Bytes(), nil
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
