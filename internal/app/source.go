package app

import (
	"context"
	"fmt"

	"github.com/sessionguard/sessionguard/internal/config"
	"github.com/sessionguard/sessionguard/internal/pg"
	"github.com/sessionguard/sessionguard/internal/source"
)

// sessionTable is the table a process follows: a named source's, or the one
// SESSION_TABLE_* describe, completed from q's catalog (which must then
// answer: without the columns' types there is nothing to follow).
func sessionTable(ctx context.Context, c config.Common, q pg.RowQuerier) (source.Table, error) {
	if c.Source != source.Generic {
		t, err := source.TableOf(c.Source)
		t.Zone = c.TimestampZone
		return t, err
	}
	t, err := source.FromMapping(c.Table)
	if err != nil {
		return t, err
	}
	t.Zone = c.TimestampZone
	rctx, cancel := context.WithTimeout(ctx, startupCheck)
	defer cancel()
	if t, err = pg.ResolveTable(rctx, q, t); err != nil {
		return t, fmt.Errorf("SESSION_SOURCE=table: %w", err)
	}
	return t, nil
}
