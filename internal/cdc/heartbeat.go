package cdc

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/cache"
)

// HeartbeatPrefix is the logical message prefix of the invalidator's
// watermark heartbeats.
const HeartbeatPrefix = "sessionguard.heartbeat"

// heartbeat is what one heartbeat vouches for: every transaction committed
// before At (Redis's clock) reached the stream, from the table named by
// Source, published as fingerprinted by Catalog. Owed is the pending-flush
// mark seen when it was sent: the cache is flushed before the watermark moves.
type heartbeat struct {
	At      time.Time
	Source  string
	Catalog string
	Owed    string
	// The check's snapshot figures, for rechecks (see cache.Vouch).
	Xmax, InProgress, Recheck, Open uint64
}

// maxHeartbeatContent bounds what is read of a message with our prefix.
const maxHeartbeatContent = 512

// sign encodes h as "v1|<ms>|<source>|<catalog>|<owed>|<xmax>|<in
// progress>|<recheck>|<open>|<hex HMAC-SHA256>" under key.
// The key is random per process and never leaves it, so a heartbeat that
// any other session emits (pg_logical_emit_message is executable by PUBLIC
// by default) cannot move the watermark.
func sign(key []byte, h heartbeat) string {
	body := "v1|" + strconv.FormatInt(h.At.UnixMilli(), 10) + "|" + h.Source + "|" + h.Catalog + "|" + h.Owed
	for _, n := range []uint64{h.Xmax, h.InProgress, h.Recheck, h.Open} {
		body += "|" + strconv.FormatUint(n, 10)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(body))
	return body + "|" + hex.EncodeToString(mac.Sum(nil))
}

// verify decodes a heartbeat signed under key; ok is false for anything
// else (another process's, forged, malformed).
func verify(key []byte, content []byte) (heartbeat, bool) {
	if len(content) > maxHeartbeatContent {
		return heartbeat{}, false
	}
	i := bytes.LastIndexByte(content, '|')
	if i < 0 {
		return heartbeat{}, false
	}
	body, sum := content[:i], content[i+1:]
	want := make([]byte, hex.EncodedLen(sha256.Size))
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	hex.Encode(want, mac.Sum(nil))
	if !hmac.Equal(sum, want) {
		return heartbeat{}, false
	}
	parts := strings.Split(string(body), "|")
	if len(parts) != 9 || parts[0] != "v1" {
		return heartbeat{}, false
	}
	ms, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || ms <= 0 {
		return heartbeat{}, false
	}
	var n [4]uint64
	for i := range n {
		if n[i], err = strconv.ParseUint(parts[5+i], 10, 64); err != nil {
			return heartbeat{}, false
		}
	}
	return heartbeat{At: time.UnixMilli(ms), Source: parts[2], Catalog: parts[3], Owed: parts[4],
		Xmax: n[0], InProgress: n[1], Recheck: n[2], Open: n[3]}, true
}

// heartbeat sends a heartbeat every HeartbeatInterval while this process
// leads, and refreshes the slot figures for health.
func (c *Consumer) heartbeat(ctx context.Context, pool *pgxpool.Pool) {
	t := time.NewTicker(c.o.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := c.beat(ctx, pool); err != nil && ctx.Err() == nil {
			c.log.Warn("heartbeat not sent: the watermark stands still", zap.Error(err))
		}
		c.readSlot(ctx, pool)
	}
}

// beat checks the source and, in the same transaction, emits one signed
// heartbeat. Its time is read from Redis first, so it is on the clock every
// validator measures staleness on and earlier than the check.
func (c *Consumer) beat(ctx context.Context, pool *pgxpool.Pool) error {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	at, err := c.cache.Time(qctx)
	if err != nil {
		return err
	}
	offset := at.Sub(c.o.Now())
	c.st.update(func(s *Status) { s.ClockOffset = offset })
	recheck, err := c.cache.Recheck(qctx) // first: it may mark a flush owed
	if err != nil {
		return err
	}
	owed, err := c.cache.FlushPending(qctx)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(qctx, pool, func(tx pgx.Tx) error {
		version := int(c.pgVersion.Load())
		if version == 0 {
			if err := tx.QueryRow(qctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
				return fmt.Errorf("read server version: %w", err)
			}
			c.pgVersion.Store(int32(version))
		}
		f, err := readSourceFacts(qctx, tx, sourceFactsQuery(c.o.Table, version), c.o.Publication, recheck)
		if err != nil {
			return err
		}
		schema := f.Schema
		c.wantSchema.Store(&schema)
		decoding := ""
		if s := c.schema.Load(); s != nil {
			decoding = *s
		}
		if probs := f.problems(c.o.Table, c.o.Publication, decoding); len(probs) > 0 {
			return c.sourceBroken(qctx, probs)
		}
		c.sourceOK()
		// The fingerprint is hashed: its length grows with the table's columns.
		catalog := sha256.Sum256([]byte(f.Catalog))
		content := sign(c.key[:], heartbeat{At: at, Source: f.Identity, Catalog: hex.EncodeToString(catalog[:16]),
			Owed: owed, Xmax: f.Xmax, InProgress: f.InProgress, Recheck: recheck, Open: f.Open})
		if _, err := tx.Exec(qctx, `SELECT pg_logical_emit_message(true, $1, $2::text)`, HeartbeatPrefix, content); err != nil {
			return fmt.Errorf("emit heartbeat: %w", err)
		}
		return nil
	})
}

// sourceBroken stops the watermark: no heartbeat goes out, and a flush is
// marked owed, since changes may be going unseen until a person fixes it.
func (c *Consumer) sourceBroken(ctx context.Context, probs []string) error {
	was := c.Status().SourceProblems
	c.st.update(func(s *Status) { s.SourceProblems = probs })
	c.m.setSourceOK(false)
	if strings.Join(was, "\n") != strings.Join(probs, "\n") {
		c.log.Error("the sessions table is not fully published: the watermark stops, validators go to Postgres; fix it and the invalidator flushes the cache and resumes",
			zap.Strings("problems", probs))
	}
	if _, err := c.cache.MarkFlushPending(ctx); err != nil {
		return err
	}
	return fmt.Errorf("source check failed: %s", strings.Join(probs, "; "))
}

func (c *Consumer) sourceOK() {
	if len(c.Status().SourceProblems) > 0 {
		c.log.Info("the sessions table is fully published again: the cache is flushed before the watermark moves")
	}
	c.st.update(func(s *Status) { s.SourceProblems = nil })
	c.m.setSourceOK(true)
}

// readSlot refreshes what health shows of the slot and of WAL retention.
func (c *Consumer) readSlot(ctx context.Context, pool *pgxpool.Pool) {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	fig, err := readSlotFigures(qctx, pool, c.o.Slot)
	if err != nil {
		return
	}
	c.st.update(func(s *Status) { s.SlotFigures = fig })
}

// vouch turns a verified heartbeat into what it lets the applier record.
func (h heartbeat) vouch() cache.Vouch {
	return cache.Vouch{Watermark: cache.Watermark{At: h.At, Source: h.Source, Catalog: h.Catalog},
		Owed: h.Owed, Xmax: h.Xmax, InProgress: h.InProgress, Recheck: h.Recheck, Open: h.Open}
}
