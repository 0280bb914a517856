package chain

import (
	"context"
	"sync"
	"time"
)

// Outage describes the chain node being unreachable: since when, how many
// attempts to reach it failed, and the last failure.
type Outage struct {
	URL      string
	Since    time.Time
	Attempts int
	LastErr  error
}

// outage tracks the failed attempts to reach the node and rate-limits the
// logs about them: an operator must learn at once that the node cannot be
// reached, and then be reminded, not flooded once per retry.
type outage struct {
	mu        sync.Mutex
	cur       *Outage
	lastLog   time.Time
	lastWrong bool          // the last log was about another chain
	firstFail chan struct{} // closed at the first failed attempt ever
	once      sync.Once
}

// failed records a failed attempt and logs it when it is the first of an
// outage, its cause changed, or ReportInterval has passed since the last
// log.
func (c *Client) failed(err error, retryIn time.Duration, wrongChain bool) {
	o := &c.outage
	o.once.Do(func() { close(o.firstFail) })
	now := time.Now()
	o.mu.Lock()
	if o.cur == nil {
		o.cur = &Outage{URL: c.cfg.URL, Since: now}
	}
	o.cur.Attempts++
	o.cur.LastErr = err
	// A change of cause (unreachable, another chain) is news as well.
	force := o.cur.Attempts == 1 || wrongChain != o.lastWrong
	o.lastWrong = wrongChain
	o.mu.Unlock()
	c.report(now, retryIn, force)
}

// report logs the outage in progress if force or ReportInterval has passed
// since the last log.
func (c *Client) report(now time.Time, retryIn time.Duration, force bool) {
	o := &c.outage
	o.mu.Lock()
	if o.cur == nil || !force && now.Sub(o.lastLog) < c.cfg.ReportInterval {
		o.mu.Unlock()
		return
	}
	o.lastLog = now
	cur, wrong := *o.cur, o.lastWrong
	o.mu.Unlock()
	attrs := []any{"attempts", cur.Attempts, "down_for", now.Sub(cur.Since).Round(time.Millisecond), "retry_in", retryIn.Round(time.Millisecond), "err", cur.LastErr}
	if wrong {
		c.log.Error("chain node now serves another chain; not reading from it", attrs...)
		return
	}
	c.log.Warn("chain node unreachable", attrs...)
}

// waitRetry waits d before the next attempt, or until ctx ends (false),
// logging the outage again every ReportInterval meanwhile: a backoff longer
// than that must not silence it.
func (c *Client) waitRetry(ctx context.Context, d time.Duration) bool {
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left <= 0 {
			return true
		}
		c.outage.mu.Lock()
		untilReport := c.cfg.ReportInterval - time.Since(c.outage.lastLog)
		c.outage.mu.Unlock()
		if !sleepCtx(ctx, min(left, max(untilReport, time.Millisecond))) {
			return false
		}
		now := time.Now()
		c.report(now, end.Sub(now), false)
	}
}

// reachable ends the outage, if any, and says how long it lasted.
func (c *Client) reachable() (Outage, time.Duration, bool) {
	o := &c.outage
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cur == nil {
		return Outage{}, 0, false
	}
	cur := *o.cur
	o.cur, o.lastLog, o.lastWrong = nil, time.Time{}, false
	return cur, time.Since(cur.Since), true
}

// CurrentOutage returns the outage in progress, if the node cannot be
// reached now.
func (c *Client) CurrentOutage() (Outage, bool) {
	o := &c.outage
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cur == nil {
		return Outage{}, false
	}
	return *o.cur, true
}

// Unreachable returns a channel closed once an attempt to reach the node
// has failed (during Start or after).
func (c *Client) Unreachable() <-chan struct{} { return c.outage.firstFail }
