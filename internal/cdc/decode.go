package cdc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sessionguard/sessionguard/internal/cache"
	"github.com/sessionguard/sessionguard/internal/session"
)

// HeartbeatPrefix is the logical message prefix of the invalidator's
// watermark heartbeats.
const HeartbeatPrefix = "sessionguard.heartbeat"

// ErrMalformed marks a replication message that cannot be decoded. The
// stream cannot be trusted past it: the connection is dropped and retried.
var ErrMalformed = errors.New("malformed replication message")

// Kind says what a decoded message means to the consumer.
type Kind int

// Kinds of decoded messages.
const (
	KindIgnore    Kind = iota // nothing to do (relation, type, origin, other tables)
	KindBegin                 // a transaction starts
	KindCommit                // a transaction ends at EndLSN
	KindRow                   // Ops for one row change of sessions
	KindTruncate              // the sessions table was truncated
	KindHeartbeat             // a heartbeat sent at Heartbeat came back
	KindMessage               // another logical message (LSN only)
)

// RowOp names the kind of row change, for metrics.
type RowOp string

// Row change kinds.
const (
	OpInsert RowOp = "insert"
	OpUpdate RowOp = "update"
	OpDelete RowOp = "delete"
)

// Event is one decoded pgoutput message.
type Event struct {
	Kind          Kind
	Op            RowOp         // KindRow
	Ops           []cache.Op    // KindRow: cache effects of the change
	EndLSN        pglogrepl.LSN // KindCommit: TransactionEndLSN
	Xid           uint32        // KindBegin: the transaction's id
	LSN           pglogrepl.LSN // KindMessage, KindHeartbeat
	Heartbeat     time.Time     // KindHeartbeat: when it was sent
	Transactional bool          // KindMessage, KindHeartbeat
	CommitTime    time.Time     // KindCommit
}

// relationColumns is what the decoder keeps of a relation message: the
// positions of the sessions columns it reads, -1 when absent.
type relationColumns struct {
	name                                                 string
	ncols                                                int
	id, userID, tokenHash, createdAt, expiresAt, revoked int
}

// Decoder turns pgoutput v1 messages into cache effects. It holds the
// relation cache of one replication connection: make a new one per
// connection. It does no I/O.
type Decoder struct {
	table     string
	relations map[uint32]*relationColumns
	types     *pgtype.Map
	now       func() time.Time
}

// NewDecoder returns a decoder for changes of the table named table (in any
// schema). now decides whether an updated row is still valid.
func NewDecoder(table string, now func() time.Time) *Decoder {
	if now == nil {
		now = time.Now
	}
	return &Decoder{table: table, relations: map[uint32]*relationColumns{}, types: pgtype.NewMap(), now: now}
}

// Decode decodes one XLogData payload. It never panics: pglogrepl's parser
// has no bounds checks, so a panic inside it is turned into ErrMalformed.
func (d *Decoder) Decode(walData []byte) (ev Event, err error) {
	defer func() {
		if r := recover(); r != nil {
			ev, err = Event{}, fmt.Errorf("%w: decoder panic: %v", ErrMalformed, r)
		}
	}()
	if len(walData) == 0 {
		return Event{}, fmt.Errorf("%w: empty message", ErrMalformed)
	}
	if err := checkTuples(walData); err != nil {
		return Event{}, err
	}
	msg, err := pglogrepl.Parse(walData)
	if err != nil {
		return Event{}, fmt.Errorf("%w: type %q: %v", ErrMalformed, walData[0], err)
	}
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		return Event{Kind: KindBegin, Xid: m.Xid}, nil
	case *pglogrepl.CommitMessage:
		return Event{Kind: KindCommit, EndLSN: m.TransactionEndLSN, CommitTime: m.CommitTime}, nil
	case *pglogrepl.RelationMessage:
		d.relations[m.RelationID] = d.relation(m)
		return Event{Kind: KindIgnore}, nil
	case *pglogrepl.InsertMessage:
		rel, ok, err := d.rel(m.RelationID)
		if !ok || err != nil {
			return Event{}, err
		}
		h, err := d.hash(rel, m.Tuple, "new")
		if err != nil {
			return Event{}, err
		}
		// A new row can only make a cached "invalid" verdict wrong.
		return Event{Kind: KindRow, Op: OpInsert, Ops: []cache.Op{cache.Drop(h)}}, nil
	case *pglogrepl.UpdateMessage:
		rel, ok, err := d.rel(m.RelationID)
		if !ok || err != nil {
			return Event{}, err
		}
		ops, err := d.update(rel, m)
		if err != nil {
			return Event{}, err
		}
		return Event{Kind: KindRow, Op: OpUpdate, Ops: ops}, nil
	case *pglogrepl.DeleteMessage:
		rel, ok, err := d.rel(m.RelationID)
		if !ok || err != nil {
			return Event{}, err
		}
		h, err := d.hash(rel, m.OldTuple, "old")
		if err != nil {
			return Event{}, err
		}
		return Event{Kind: KindRow, Op: OpDelete, Ops: []cache.Op{cache.Revoke(h)}}, nil
	case *pglogrepl.TruncateMessage:
		for _, id := range m.RelationIDs {
			if rel, ok := d.relations[id]; ok && rel.name == d.table {
				return Event{Kind: KindTruncate}, nil
			}
		}
		if len(m.RelationIDs) != int(m.RelationNum) {
			return Event{}, fmt.Errorf("%w: truncate lists %d of %d relations", ErrMalformed, len(m.RelationIDs), m.RelationNum)
		}
		return Event{Kind: KindIgnore}, nil
	case *pglogrepl.LogicalDecodingMessage:
		ev := Event{Kind: KindMessage, LSN: m.LSN, Transactional: m.Transactional}
		if m.Prefix == HeartbeatPrefix && m.Transactional {
			ms, err := parseMillis(m.Content)
			if err != nil {
				return Event{}, fmt.Errorf("%w: heartbeat content: %v", ErrMalformed, err)
			}
			ev.Kind, ev.Heartbeat = KindHeartbeat, time.UnixMilli(ms)
		}
		return ev, nil
	default:
		return Event{Kind: KindIgnore}, nil
	}
}

func parseMillis(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 19 {
		return 0, fmt.Errorf("bad length %d", len(b))
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, errors.New("not a decimal number")
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

func (d *Decoder) relation(m *pglogrepl.RelationMessage) *relationColumns {
	r := &relationColumns{name: m.RelationName, ncols: len(m.Columns),
		id: -1, userID: -1, tokenHash: -1, createdAt: -1, expiresAt: -1, revoked: -1}
	for i, c := range m.Columns {
		switch c.Name {
		case "id":
			r.id = i
		case "user_id":
			r.userID = i
		case "token_hash":
			r.tokenHash = i
		case "created_at":
			r.createdAt = i
		case "expires_at":
			r.expiresAt = i
		case "revoked_at":
			r.revoked = i
		}
	}
	return r
}

// rel finds the relation of a row change; ok is false for other tables.
func (d *Decoder) rel(id uint32) (*relationColumns, bool, error) {
	r, found := d.relations[id]
	if !found {
		// pgoutput always sends the relation before its first change on a
		// connection: a change without one is a broken stream.
		return nil, false, fmt.Errorf("%w: change for relation %d before its relation message", ErrMalformed, id)
	}
	if r.name != d.table {
		return nil, false, nil
	}
	if r.tokenHash < 0 {
		return nil, false, fmt.Errorf("%w: relation %s has no token_hash column", ErrMalformed, r.name)
	}
	return r, true, nil
}

// column returns tuple column i after checking the tuple's shape.
func column(rel *relationColumns, t *pglogrepl.TupleData, i int, which string) (*pglogrepl.TupleDataColumn, error) {
	if t == nil {
		return nil, fmt.Errorf("%w: missing %s tuple", ErrMalformed, which)
	}
	if len(t.Columns) != int(t.ColumnNum) || len(t.Columns) > rel.ncols {
		return nil, fmt.Errorf("%w: %s tuple has %d columns, relation %s has %d", ErrMalformed, which, len(t.Columns), rel.name, rel.ncols)
	}
	if i < 0 || i >= len(t.Columns) {
		return nil, fmt.Errorf("%w: %s tuple lacks column %d", ErrMalformed, which, i)
	}
	return t.Columns[i], nil
}

func (d *Decoder) hash(rel *relationColumns, t *pglogrepl.TupleData, which string) (session.Hash, error) {
	var h session.Hash
	c, err := column(rel, t, rel.tokenHash, which)
	if err != nil {
		return h, err
	}
	if c.DataType != pglogrepl.TupleDataTypeText {
		return h, fmt.Errorf("%w: %s token_hash is not a text value (kind %q)", ErrMalformed, which, c.DataType)
	}
	var b []byte
	if err := d.types.Scan(pgtype.ByteaOID, pgtype.TextFormatCode, c.Data, &b); err != nil {
		return h, fmt.Errorf("%w: %s token_hash: %v", ErrMalformed, which, err)
	}
	if len(b) != len(h) {
		return h, fmt.Errorf("%w: %s token_hash is %d bytes, want %d", ErrMalformed, which, len(b), len(h))
	}
	copy(h[:], b)
	return h, nil
}

// update maps an UPDATE to cache ops. With the token_hash index as replica
// identity, an old key tuple ('K') is present only when token_hash changed;
// with REPLICA IDENTITY FULL the old row ('O') is always there.
func (d *Decoder) update(rel *relationColumns, m *pglogrepl.UpdateMessage) ([]cache.Op, error) {
	newHash, err := d.hash(rel, m.NewTuple, "new")
	if err != nil {
		return nil, err
	}
	if m.OldTuple != nil {
		oldHash, err := d.hash(rel, m.OldTuple, "old")
		if err != nil {
			return nil, err
		}
		if oldHash != newHash {
			// The token changed: both the old token's entry and any negative
			// entry for the new token are wrong now.
			return []cache.Op{cache.Revoke(oldHash), cache.Drop(newHash)}, nil
		}
	}
	s, ok, err := d.session(rel, m.NewTuple)
	if err != nil {
		return nil, err
	}
	if !ok || !s.ValidAt(d.now()) {
		return []cache.Op{cache.Revoke(newHash)}, nil
	}
	// Still valid (expiry moved, say): update a cached entry in place. Apply
	// never creates an entry, and the held fills keep a validator that reads
	// the row before this commit is visible from filling the old version.
	return []cache.Op{{Hash: newHash, Session: s, HoldFills: true}}, nil
}

// session reads the new row. ok is false when a column needed is an
// unchanged TOASTed value ('u', no data) or missing: the caller then drops
// the entry rather than guess.
func (d *Decoder) session(rel *relationColumns, t *pglogrepl.TupleData) (*session.Session, bool, error) {
	s := &session.Session{}
	text := func(i int, name string) ([]byte, bool, error) {
		if i < 0 {
			return nil, false, nil
		}
		c, err := column(rel, t, i, "new")
		if err != nil {
			return nil, false, err
		}
		switch c.DataType {
		case pglogrepl.TupleDataTypeText:
			return c.Data, true, nil
		case pglogrepl.TupleDataTypeNull:
			return nil, true, nil
		case pglogrepl.TupleDataTypeToast:
			return nil, false, nil
		default:
			return nil, false, fmt.Errorf("%w: %s has kind %q", ErrMalformed, name, c.DataType)
		}
	}
	ts := func(i int, name string) (*time.Time, bool, error) {
		b, ok, err := text(i, name)
		if !ok || err != nil || b == nil {
			return nil, ok, err
		}
		var v pgtype.Timestamptz
		if err := d.types.Scan(pgtype.TimestamptzOID, pgtype.TextFormatCode, b, &v); err != nil {
			return nil, false, fmt.Errorf("%w: %s: %v", ErrMalformed, name, err)
		}
		var tm time.Time
		switch v.InfinityModifier {
		case pgtype.Infinity:
			tm = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
		case pgtype.NegativeInfinity:
			tm = time.Unix(0, 0)
		default:
			tm = v.Time
		}
		return &tm, true, nil
	}
	for _, f := range []struct {
		i    int
		name string
		dst  *string
	}{{rel.id, "id", &s.ID}, {rel.userID, "user_id", &s.UserID}} {
		b, ok, err := text(f.i, f.name)
		if !ok || err != nil || b == nil {
			return nil, false, err
		}
		*f.dst = string(b)
	}
	created, ok, err := ts(rel.createdAt, "created_at")
	if !ok || err != nil || created == nil {
		return nil, false, err
	}
	expires, ok, err := ts(rel.expiresAt, "expires_at")
	if !ok || err != nil || expires == nil {
		return nil, false, err
	}
	revoked, ok, err := ts(rel.revoked, "revoked_at")
	if !ok || err != nil {
		return nil, false, err
	}
	s.CreatedAt, s.ExpiresAt, s.RevokedAt = *created, *expires, revoked
	return s, true, nil
}

// checkTuples walks the tuple data of an insert, update or delete before
// pglogrepl parses it: its parser allocates each column's declared length
// before checking it against the message, so one corrupt length could
// allocate gigabytes.
func checkTuples(b []byte) error {
	if len(b) > 0 && b[0] == 'T' {
		// Truncate: count (4), options (1), then count relation ids (4
		// each); pglogrepl allocates for the count before reading them.
		if len(b) < 6 || int64(binary.BigEndian.Uint32(b[1:]))*4 > int64(len(b)-6) {
			return fmt.Errorf("%w: T message: relation count beyond the message", ErrMalformed)
		}
		return nil
	}
	if len(b) == 0 || (b[0] != 'I' && b[0] != 'U' && b[0] != 'D') {
		return nil
	}
	bad := func(why string) error { return fmt.Errorf("%w: %c message: %s", ErrMalformed, b[0], why) }
	p := 5 // type byte and relation id
	for tuples := 0; ; tuples++ {
		if p >= len(b) {
			return bad("truncated before tuple kind")
		}
		kind := b[p]
		p++
		if kind != 'N' && kind != 'K' && kind != 'O' {
			return bad(fmt.Sprintf("unknown tuple kind %q", kind))
		}
		if p+2 > len(b) {
			return bad("truncated column count")
		}
		n := int(binary.BigEndian.Uint16(b[p:]))
		p += 2
		for i := 0; i < n; i++ {
			if p >= len(b) {
				return bad("truncated column")
			}
			switch b[p] {
			case 'n', 'u':
				p++
			case 't', 'b':
				if p+5 > len(b) {
					return bad("truncated column length")
				}
				l := int(binary.BigEndian.Uint32(b[p+1:]))
				if l > len(b)-p-5 {
					return bad("column length beyond the message")
				}
				p += 5 + l
			default:
				return bad(fmt.Sprintf("unknown column kind %q", b[p]))
			}
		}
		// Only an update has a second tuple, after an old one.
		if b[0] != 'U' || kind == 'N' || tuples == 1 {
			return nil
		}
	}
}
