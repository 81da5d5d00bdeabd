package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// AckMigration tells the agent at agentURL (its HTTP API, e.g.
// "http://127.0.0.1:8500") that the copy named migrationID, which the app
// answered 202 to, is complete: POST /v1/migrations/{id}/complete. token is
// the agent's API token, sent as a bearer token when not empty. A nil
// client means http.DefaultClient. Any 2xx is success.
func AckMigration(ctx context.Context, client *http.Client, agentURL, migrationID, token string) error {
	return postMigration(ctx, client, agentURL, migrationID, "complete", token, nil)
}

// FailMigration tells the agent that the copy named migrationID failed,
// with a reason for its log: POST /v1/migrations/{id}/fail with
// {"reason": ...}. The cluster retries the copy or plans another one.
func FailMigration(ctx context.Context, client *http.Client, agentURL, migrationID, token, reason string) error {
	body, err := json.Marshal(struct {
		Reason string `json:"reason"`
	}{reason})
	if err != nil {
		return err
	}
	return postMigration(ctx, client, agentURL, migrationID, "fail", token, body)
}

func postMigration(ctx context.Context, client *http.Client, agentURL, migrationID, verb, token string, body []byte) error {
	if migrationID == "" {
		return fmt.Errorf("hooks: %s migration: empty migration id", verb)
	}
	if client == nil {
		client = http.DefaultClient
	}
	u := strings.TrimRight(agentURL, "/") + "/v1/migrations/" + url.PathEscape(migrationID) + "/" + verb
	if body == nil {
		body = []byte("{}")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("hooks: %s migration %s: %w", verb, migrationID, err)
	}
	// The agent refuses mutating calls not declared as JSON (they could
	// come from a web page).
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("hooks: %s migration %s: %w", verb, migrationID, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("hooks: %s migration %s: agent answered %s: %s", verb, migrationID, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}
