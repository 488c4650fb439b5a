package cdc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/source"
)

// replConfig builds the replication connection's config.
func (c *Consumer) replConfig() (*pgconn.Config, error) {
	cfg, err := pgconn.ParseConfig(c.o.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["application_name"] = "sessionguard-invalidator"
	// pgoutput writes values with the walsender's output functions: pin
	// their formats so the decoder always reads ISO timestamps and hex bytea.
	for k := range cfg.RuntimeParams {
		switch strings.ToLower(k) {
		case "datestyle", "timezone", "bytea_output":
			delete(cfg.RuntimeParams, k)
		}
	}
	cfg.RuntimeParams["DateStyle"] = "ISO"
	cfg.RuntimeParams["TimeZone"] = "UTC"
	cfg.RuntimeParams["bytea_output"] = "hex"
	return cfg, nil
}

// query runs a simple SQL query on the replication connection.
func query(ctx context.Context, conn *pgconn.PgConn, sql string) ([][][]byte, error) {
	res, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(res) == 0 {
		return nil, nil
	}
	return res[0].Rows, nil
}

// tableSchema is the schema the sessions table resolves to (through the
// search path when its name has no schema; the current schema when there is
// no table yet): the decoder follows that table only, never a namesake in
// another schema.
func tableSchema(ctx context.Context, conn *pgconn.PgConn, t source.Table) (string, error) {
	rows, err := query(ctx, conn, `SELECT coalesce((SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = to_regclass(`+pg.QuoteLiteral(t.Name)+`)), current_schema(), '')`)
	if err != nil || len(rows) != 1 {
		return "", fmt.Errorf("resolve the sessions table's schema: %w", err)
	}
	return string(rows[0][0]), nil
}

// prepare checks the publication and the slot (creating or recreating it)
// and returns the position to start from.
func (c *Consumer) prepare(ctx context.Context, conn *pgconn.PgConn) (pglogrepl.LSN, error) {
	rows, err := query(ctx, conn, `SELECT 1 FROM pg_publication WHERE pubname = `+pg.QuoteLiteral(c.o.Publication))
	if err != nil {
		return 0, fmt.Errorf("check publication: %w", err)
	}
	if len(rows) == 0 {
		return 0, fmt.Errorf("%w: %q (run `validator migrate`)", ErrPublicationMissing, c.o.Publication)
	}
	// A flush owed by an earlier process (it created the slot, or saw the
	// table unpublished, and died before flushing) comes first: the slot
	// looks healthy, but changes may never have reached the cache.
	var owed string
	if err := c.retry(ctx, "read pending cache flush", func(ctx context.Context) error {
		var err error
		owed, err = c.cache.FlushPending(ctx)
		return err
	}); err != nil {
		return 0, err
	}
	if owed != "" {
		// Transactions in progress now may still commit changes that were
		// never streamed: record them for a recheck before flushing.
		rows, err := query(ctx, conn, `SELECT pg_snapshot_xmax(s)::text, (SELECT count(*) FROM pg_snapshot_xip(s))::text
			FROM pg_current_snapshot() s`)
		if err != nil || len(rows) != 1 {
			return 0, fmt.Errorf("read snapshot: %w", err)
		}
		xmax, err1 := strconv.ParseUint(string(rows[0][0]), 10, 64)
		open, err2 := strconv.ParseUint(string(rows[0][1]), 10, 64)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("bad snapshot figures %q %q", rows[0][0], rows[0][1])
		}
		if err := c.retry(ctx, "schedule cache recheck", func(ctx context.Context) error {
			return c.cache.ScheduleRecheck(ctx, xmax, open)
		}); err != nil {
			return 0, err
		}
		if err := c.flushRetry(ctx, "flush_pending", owed); err != nil {
			return 0, err
		}
		c.log.Warn("cache flushed: a flush was owed (a slot was created, the table was not fully published, or a transaction was left half applied, and no flush followed yet)")
	}
	rows, err = query(ctx, conn, `SELECT coalesce(confirmed_flush_lsn::text, ''), coalesce(wal_status, ''), plugin
		FROM pg_replication_slots WHERE slot_name = `+pg.QuoteLiteral(c.o.Slot))
	if err != nil {
		return 0, fmt.Errorf("read slot: %w", err)
	}
	slot := pgx.Identifier{c.o.Slot}.Sanitize()
	if len(rows) == 1 {
		confirmed, walStatus, plugin := string(rows[0][0]), string(rows[0][1]), string(rows[0][2])
		if plugin != "pgoutput" {
			return 0, fmt.Errorf("slot %s uses plugin %q, want pgoutput: drop it or choose another REPLICATION_SLOT", c.o.Slot, plugin)
		}
		if walStatus != "lost" && confirmed != "" {
			lsn, err := pglogrepl.ParseLSN(confirmed)
			if err != nil {
				return 0, fmt.Errorf("slot confirmed_flush_lsn %q: %w", confirmed, err)
			}
			c.seenSlot.Store(true)
			return lsn, nil
		}
		c.slotLost(fmt.Errorf("%w: wal_status %q (max_slot_wal_keep_size exceeded?)", ErrSlotLost, walStatus))
		if err := pglogrepl.DropReplicationSlot(ctx, conn, slot, pglogrepl.DropReplicationSlotOptions{}); err != nil {
			return 0, fmt.Errorf("drop invalidated slot: %w", err)
		}
	} else if c.seenSlot.Load() {
		c.slotLost(fmt.Errorf("%w: slot %s no longer exists", ErrSlotLost, c.o.Slot))
	}
	var mark string
	if err := c.retry(ctx, "mark cache flush pending", func(ctx context.Context) error {
		var err error
		mark, err = c.cache.MarkFlushPending(ctx)
		return err
	}); err != nil {
		return 0, err
	}
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "NOEXPORT_SNAPSHOT"})
	if err != nil {
		return 0, fmt.Errorf("create slot %s: %w", c.o.Slot, err)
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return 0, fmt.Errorf("slot consistent point %q: %w", res.ConsistentPoint, err)
	}
	c.seenSlot.Store(true)
	// Changes before the slot's consistent point never reach us: whatever the
	// cache holds from before may be stale. Flush only now that the slot
	// exists, so that every fill after the flush reads a database state whose
	// later changes all come through the new slot.
	if err := c.flushRetry(ctx, "slot_created", mark); err != nil {
		return 0, err
	}
	c.log.Info("replication slot created; cache flushed", zap.String("slot", c.o.Slot), zap.Stringer("lsn", lsn))
	return lsn, nil
}

func (c *Consumer) slotLost(err error) {
	c.m.lostSlot()
	c.log.Error("REPLICATION SLOT LOST: changes were missed; flushing the cache and recreating the slot",
		zap.String("slot", c.o.Slot), zap.Error(err))
}

// isSlotGone reports server errors that mean the slot cannot serve us.
func isSlotGone(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		if pe.Code == "42704" {
			return true
		}
		m := pe.Message
		return strings.Contains(m, "can no longer get changes") ||
			strings.Contains(m, "has already been removed") ||
			strings.Contains(m, "invalidated")
	}
	return false
}

// SlotFigures are the slot's position and WAL retention, for health and
// metrics.
type SlotFigures struct {
	ServerWAL, ConfirmedFlush pglogrepl.LSN
	LagBytes                  int64  // -1 unknown
	WALStatus                 string // reserved, extended, unreserved, lost
	SafeWALSize               int64  // bytes before the slot is lost; -1 unlimited or unknown
	KeepUnlimited             bool   // max_slot_wal_keep_size = -1: the slot may fill the disk
}

// readSlotFigures reads the slot's figures from pg_replication_slots.
func readSlotFigures(ctx context.Context, q pg.RowQuerier, slot string) (SlotFigures, error) {
	f := SlotFigures{LagBytes: -1, SafeWALSize: -1}
	var unlimited string
	err := q.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text, current_setting('max_slot_wal_keep_size'),
		coalesce((SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1), '0/0'),
		coalesce((SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1), -1),
		coalesce((SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1), ''),
		coalesce((SELECT safe_wal_size FROM pg_replication_slots WHERE slot_name = $1), -1)`, slot).
		Scan(&f.ServerWAL, &unlimited, &f.ConfirmedFlush, &f.LagBytes, &f.WALStatus, &f.SafeWALSize)
	if err != nil {
		return f, fmt.Errorf("read slot figures: %w", err)
	}
	f.KeepUnlimited = unlimited == "-1"
	return f, nil
}

// warnUnlimitedWAL says once per session that a stuck slot could fill the disk.
func (c *Consumer) warnUnlimitedWAL(ctx context.Context) {
	if c.pool.Load() == nil {
		return
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	f, err := readSlotFigures(qctx, c.pool.Load(), c.o.Slot)
	if err != nil {
		return
	}
	c.st.update(func(s *Status) { s.SlotFigures = f })
	if f.KeepUnlimited {
		c.log.Warn("max_slot_wal_keep_size is -1 (unlimited): if this invalidator stops acknowledging, the slot keeps WAL until the disk is full; set it (e.g. ALTER SYSTEM SET max_slot_wal_keep_size = '10GB'; SELECT pg_reload_conf()). A slot lost to it is detected and the cache flushed",
			zap.String("slot", c.o.Slot))
	}
}
