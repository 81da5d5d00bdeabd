package health

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// CheckHTTP sends GET url with client and returns nil when the answer is
// 2xx. Any other status, a transport error or ctx ending is an error. The
// body is read (at most 4 KiB) and closed so the connection can be reused.
func CheckHTTP(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("health: bad health URL %q: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("health: GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("health: GET %s: status %d", url, resp.StatusCode)
	}
	return nil
}

// NewProbeClient returns the HTTP client HTTPProbe uses: no keep-alives, so
// each check opens a fresh connection (a health check should prove that
// the app still accepts connections) and no idle connection or goroutine
// outlives a check; timeout bounds the whole exchange.
func NewProbeClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:             nil, // the app is local; never go through a proxy
			DisableKeepAlives: true,
		},
		// A redirect from a health endpoint is not an answer.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// HTTPProbe returns an AppProbe that GETs url and treats 2xx as healthy and
// anything else, or no answer within timeout, as unhealthy.
func HTTPProbe(url string, timeout time.Duration) AppProbe {
	client := NewProbeClient(timeout)
	return func(ctx context.Context) error {
		return CheckHTTP(ctx, client, url)
	}
}
