package procs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// WaitReady polls GET /readyz until it answers 200. It fails with the end
// of the log if the process exits or timeout passes first, and with
// ctx.Err() if ctx ends.
func (p *Proc) WaitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/readyz", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited during start-up (%v)%s", p.Name, p.err, p.LogTail())
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s not ready after %v (last answer: %s)%s", p.Name, timeout, last, p.LogTail())
			}
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
