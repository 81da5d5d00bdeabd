package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// errAgentRefused marks an answer 4xx of the agent: the request itself was
// refused, and sending it again unchanged will not help.
var errAgentRefused = errors.New("refused")

// postToAgent POSTs in as JSON to path of the agent's API at agentURL
// (e.g. "http://127.0.0.1:8500", a trailing slash is fine), with the token when
// not empty, and decodes the 2xx answer into out. A 4xx answer is an error
// wrapping errAgentRefused (see refusedAs); any other failure is worth
// retrying. A nil client means http.DefaultClient.
func postToAgent(ctx context.Context, client *http.Client, agentURL, path, token string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(agentURL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return fmt.Errorf("%w: agent answered %s: %s", errAgentRefused, resp.Status, strings.TrimSpace(string(msg)))
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return fmt.Errorf("agent answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	if err := json.Unmarshal(msg, out); err != nil {
		return fmt.Errorf("decode the answer: %w", err)
	}
	return nil
}

// refusedAs turns postToAgent's refusal into the caller's own error
// (ErrHoldingsRefused, ErrLoadRefused), keeping the agent's words.
func refusedAs(err, refused error) error {
	if errors.Is(err, errAgentRefused) {
		return fmt.Errorf("%w: %s", refused, strings.TrimPrefix(err.Error(), errAgentRefused.Error()+": "))
	}
	return err
}
