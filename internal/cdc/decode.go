package cdc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/source"
)

// ErrMalformed marks a replication message that cannot be decoded.
var ErrMalformed = errors.New("malformed replication message")

// Kind says what a decoded message means to the consumer.
type Kind int

// Kinds of decoded messages.
const (
	KindIgnore   Kind = iota // nothing to do (relation, type, origin, other tables)
	KindBegin                // a transaction starts
	KindCommit               // a transaction ends at EndLSN
	KindRow                  // Change holds a row change of the sessions table
	KindTruncate             // the sessions table was truncated
	KindMessage              // a transactional logical message: Prefix, Content
)

// RowOp names the kind of row change.
type RowOp string

// Row change kinds.
const (
	OpInsert RowOp = "insert"
	OpUpdate RowOp = "update"
	OpDelete RowOp = "delete"
)

// RowChange is one row change of the sessions table, decoded but not yet
// judged: the policy (Effects) turns it into cache effects.
type RowChange struct {
	Op RowOp
	// OldKey is the cache key the row had: on a DELETE, and on an UPDATE
	// when the replica identity sent the old key (it changed) or row.
	OldKey *session.Hash
	// NewKey is the cache key of the new row (INSERT, UPDATE); nil when a
	// ByID table's row has no key (it can have no entry).
	NewKey *session.Hash
	// ID and OldID are the id hashes (source.Table.IDHash) of the new row
	// of an UPDATE and of the row a DELETE (or an UPDATE of the primary key)
	// ended, for a table whose replica identity is its primary key while
	// the key is another column (source.Table.ByID); OldKey is then nil.
	ID, OldID *session.Hash
	// Row is the new row of an UPDATE; nil when a column it needs is absent
	// or an unchanged TOASTed value (the policy then drops rather than guess).
	Row *session.Session
}

// Event is one decoded pgoutput message.
type Event struct {
	Kind    Kind
	Change  RowChange     // KindRow
	Xid     uint32        // KindBegin
	EndLSN  pglogrepl.LSN // KindCommit: TransactionEndLSN
	Prefix  string        // KindMessage
	Content []byte        // KindMessage
}

// relationColumns is what the decoder keeps of a relation message: the
// positions of the sessions columns it reads, -1 when absent.
type relationColumns struct {
	ours                                                               bool // schema and name are the sessions table's
	name                                                               string
	ncols                                                              int
	key                                                                int
	id, userID, createdAt, expiresAt, revoked, active, lastActive, aal int
}

// Decoder turns pgoutput v1 messages into events. It holds the relation cache
// of one replication connection: make a new one per connection. It does no
// I/O and judges nothing.
type Decoder struct {
	schema, name string
	t            source.Table
	relations    map[uint32]*relationColumns
	types        *pgtype.Map
	loc          *time.Location // of timestamps without time zone
	// Scan plans, made on first use: pgtype.Map.Scan plans again on every
	// call (allocating), a cost a flood pays for every row.
	byteaPlan, tsPlan, tstzPlan pgtype.ScanPlan
}

// scan is pgtype.Map.Scan of text-format src into dst with the plan kept
// in *plan (made on first use; dst's type must not change between calls).
func (d *Decoder) scan(plan *pgtype.ScanPlan, oid uint32, src []byte, dst any) error {
	if *plan == nil {
		*plan = d.types.PlanScan(oid, pgtype.TextFormatCode, dst)
	}
	return (*plan).Scan(src, dst)
}

// NewDecoder returns a decoder for changes of t, found in schema under name
// (its relation name); changes of any other relation are ignored.
func NewDecoder(t source.Table, schema, name string) *Decoder {
	return &Decoder{schema: schema, name: name, t: t, relations: map[uint32]*relationColumns{}, types: pgtype.NewMap(), loc: t.Location()}
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
	if err := checkBounds(walData); err != nil {
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
		return Event{Kind: KindCommit, EndLSN: m.TransactionEndLSN}, nil
	case *pglogrepl.RelationMessage:
		d.relations[m.RelationID] = d.relation(m)
		return Event{Kind: KindIgnore}, nil
	case *pglogrepl.InsertMessage:
		rel, ok, err := d.rel(m.RelationID)
		if !ok || err != nil {
			return Event{}, err
		}
		h, err := d.newKey(rel, m.Tuple)
		if err != nil {
			return Event{}, err
		}
		return Event{Kind: KindRow, Change: RowChange{Op: OpInsert, NewKey: h}}, nil
	case *pglogrepl.UpdateMessage:
		rel, ok, err := d.rel(m.RelationID)
		if !ok || err != nil {
			return Event{}, err
		}
		ch := RowChange{Op: OpUpdate}
		if ch.NewKey, err = d.newKey(rel, m.NewTuple); err != nil {
			return Event{}, err
		}
		if d.t.ByID {
			// The replica identity is the primary key: an old tuple is sent
			// only when it changed, and holds it alone.
			if ch.ID, err = d.idHash(rel, m.NewTuple, "new"); err != nil {
				return Event{}, err
			}
			if m.OldTuple != nil {
				if ch.OldID, err = d.idHash(rel, m.OldTuple, "old"); err != nil {
					return Event{}, err
				}
			}
		} else if m.OldTuple != nil {
			old, err := d.hash(rel, m.OldTuple, "old")
			if err != nil {
				return Event{}, err
			}
			ch.OldKey = &old
		}
		if ch.Row, err = d.session(rel, m.NewTuple); err != nil {
			return Event{}, err
		}
		return Event{Kind: KindRow, Change: ch}, nil
	case *pglogrepl.DeleteMessage:
		rel, ok, err := d.rel(m.RelationID)
		if !ok || err != nil {
			return Event{}, err
		}
		if d.t.ByID {
			id, err := d.idHash(rel, m.OldTuple, "old")
			if err != nil {
				return Event{}, err
			}
			return Event{Kind: KindRow, Change: RowChange{Op: OpDelete, OldID: id}}, nil
		}
		h, err := d.hash(rel, m.OldTuple, "old")
		if err != nil {
			return Event{}, err
		}
		return Event{Kind: KindRow, Change: RowChange{Op: OpDelete, OldKey: &h}}, nil
	case *pglogrepl.TruncateMessage:
		if len(m.RelationIDs) != int(m.RelationNum) {
			return Event{}, fmt.Errorf("%w: truncate lists %d of %d relations", ErrMalformed, len(m.RelationIDs), m.RelationNum)
		}
		for _, id := range m.RelationIDs {
			rel, found := d.relations[id]
			if !found {
				return Event{}, fmt.Errorf("%w: truncate of relation %d before its relation message", ErrMalformed, id)
			}
			if rel.ours {
				return Event{Kind: KindTruncate}, nil
			}
		}
		return Event{Kind: KindIgnore}, nil
	case *pglogrepl.LogicalDecodingMessage:
		if !m.Transactional {
			return Event{Kind: KindIgnore}, nil
		}
		return Event{Kind: KindMessage, Prefix: m.Prefix, Content: m.Content}, nil
	default:
		return Event{Kind: KindIgnore}, nil
	}
}

func (d *Decoder) relation(m *pglogrepl.RelationMessage) *relationColumns {
	r := &relationColumns{ours: m.Namespace == d.schema && m.RelationName == d.name,
		name: m.Namespace + "." + m.RelationName, ncols: len(m.Columns)}
	t := d.t
	for _, f := range []struct {
		dst *int
		col source.Column
	}{{&r.key, t.Key}, {&r.id, t.ID}, {&r.userID, t.UserID}, {&r.createdAt, t.CreatedAt}, {&r.expiresAt, t.ExpiresAt},
		{&r.revoked, t.RevokedAt}, {&r.active, t.Active}, {&r.lastActive, t.LastActive}, {&r.aal, t.AAL}} {
		*f.dst = -1
		for i, c := range m.Columns {
			if f.col.Name != "" && c.Name == f.col.Name {
				*f.dst = i
			}
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
	if !r.ours {
		return nil, false, nil
	}
	if r.key < 0 || r.id < 0 {
		return nil, false, fmt.Errorf("%w: relation %s lacks column %s or %s", ErrMalformed, r.name, d.t.Key.Name, d.t.ID.Name)
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

// newKey reads the key of a new row. A ByID table's key may be NULL (a
// Kratos session without a token: the row has no entry) or an unchanged
// TOASTed value sent without its data: newKey is then nil, and the row's
// entries are found by its id.
func (d *Decoder) newKey(rel *relationColumns, t *pglogrepl.TupleData) (*session.Hash, error) {
	if d.t.ByID {
		c, err := column(rel, t, rel.key, "new")
		if err != nil {
			return nil, err
		}
		if c.DataType == pglogrepl.TupleDataTypeNull || c.DataType == pglogrepl.TupleDataTypeToast {
			return nil, nil
		}
	}
	h, err := d.hash(rel, t, "new")
	if err != nil {
		return nil, err
	}
	return &h, nil
}

// idHash reads the primary key of a tuple as source.Table.IDHash.
func (d *Decoder) idHash(rel *relationColumns, t *pglogrepl.TupleData, which string) (*session.Hash, error) {
	c, err := column(rel, t, rel.id, which)
	if err != nil {
		return nil, err
	}
	if c.DataType != pglogrepl.TupleDataTypeText {
		return nil, fmt.Errorf("%w: %s %s is not a text value (kind %q)", ErrMalformed, which, d.t.ID.Name, c.DataType)
	}
	h := d.t.IDHash(string(c.Data))
	return &h, nil
}

// hash reads the key column of a tuple as its cache key (source.Table.HashOf).
func (d *Decoder) hash(rel *relationColumns, t *pglogrepl.TupleData, which string) (session.Hash, error) {
	var h session.Hash
	name := d.t.Key.Name
	c, err := column(rel, t, rel.key, which)
	if err != nil {
		return h, err
	}
	if c.DataType != pglogrepl.TupleDataTypeText {
		return h, fmt.Errorf("%w: %s %s is not a text value (kind %q)", ErrMalformed, which, name, c.DataType)
	}
	raw := c.Data
	if d.t.KeyIsHash {
		if err := d.scan(&d.byteaPlan, pgtype.ByteaOID, c.Data, &raw); err != nil {
			return h, fmt.Errorf("%w: %s %s: %v", ErrMalformed, which, name, err)
		}
	}
	h, ok := d.t.HashOf(raw)
	if !ok {
		return h, fmt.Errorf("%w: %s %s is %d bytes, want %d", ErrMalformed, which, name, len(raw), len(h))
	}
	return h, nil
}

// session reads the new row. It is nil when a column needed is an unchanged
// TOASTed value ('u', no data), NULL where it may not be, or missing. A NULL
// expiry is none, as the lookup reads it.
func (d *Decoder) session(rel *relationColumns, t *pglogrepl.TupleData) (*session.Session, error) {
	s := &session.Session{}
	// text reads column i: ok false when it is absent or unchanged TOAST;
	// a nil value with ok is NULL.
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
	for _, f := range []struct {
		i        int
		col      source.Column
		dst      *string
		optional bool
	}{{rel.id, d.t.ID, &s.ID, false}, {rel.userID, d.t.UserID, &s.UserID, false}, {rel.aal, d.t.AAL, &s.AAL, true}} {
		if f.col.Name == "" {
			continue
		}
		b, ok, err := text(f.i, f.col.Name)
		if err != nil || !ok || (b == nil && !f.optional) {
			return nil, err
		}
		*f.dst = string(b)
	}
	for _, f := range []struct {
		i        int
		col      source.Column
		dst      *time.Time
		optional bool
	}{{rel.createdAt, d.t.CreatedAt, &s.CreatedAt, false}, {rel.expiresAt, d.t.ExpiresAt, &s.ExpiresAt, true},
		{rel.lastActive, d.t.LastActive, &s.LastActive, true}} {
		if f.col.Name == "" {
			continue
		}
		b, ok, err := text(f.i, f.col.Name)
		if err != nil || !ok || (b == nil && !f.optional) {
			return nil, err
		}
		if b == nil {
			continue
		}
		if *f.dst, err = d.timestamp(b, f.col); err != nil {
			return nil, err
		}
	}
	if d.t.SecretID {
		s.ID = d.t.IDHash(s.ID).Hex()
	}
	if d.t.Active.Name != "" {
		b, ok, err := text(rel.active, d.t.Active.Name)
		if err != nil || !ok {
			return nil, err
		}
		if string(b) != "t" {
			// Inactive (or NULL) reads as revoked, as in the lookup.
			epoch := time.Unix(0, 0).UTC()
			s.RevokedAt = &epoch
		}
	}
	if d.t.RevokedAt.Type == "boolean" {
		b, ok, err := text(rel.revoked, d.t.RevokedAt.Name)
		if err != nil || !ok {
			return nil, err
		}
		if string(b) == "t" {
			epoch := time.Unix(0, 0).UTC()
			s.RevokedAt = &epoch
		}
	} else if d.t.RevokedAt.Name != "" {
		b, ok, err := text(rel.revoked, d.t.RevokedAt.Name)
		if err != nil || !ok {
			return nil, err
		}
		if b != nil {
			r, err := d.timestamp(b, d.t.RevokedAt)
			if err != nil {
				return nil, err
			}
			s.RevokedAt = &r
		}
	}
	return s, nil
}

// timestamp parses a timestamp column's text; one without time zone is
// read as UTC, as the auth server writes it.
func (d *Decoder) timestamp(b []byte, col source.Column) (time.Time, error) {
	var (
		v   pgtype.Timestamptz
		err error
	)
	if col.Type == "timestamp without time zone" {
		var ts pgtype.Timestamp
		err = d.scan(&d.tsPlan, pgtype.TimestampOID, b, &ts)
		// The wall clock of the zone it was written in (source.Table.Zone).
		w := ts.Time
		at := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), d.loc)
		v = pgtype.Timestamptz{Time: at, InfinityModifier: ts.InfinityModifier, Valid: ts.Valid}
	} else {
		err = d.scan(&d.tstzPlan, pgtype.TimestamptzOID, b, &v)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s: %v", ErrMalformed, col.Name, err)
	}
	switch v.InfinityModifier {
	case pgtype.Infinity:
		return time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), nil
	case pgtype.NegativeInfinity:
		return time.Unix(0, 0), nil
	}
	return v.Time.UTC(), nil
}

// checkBounds walks a message's variable-length parts before pglogrepl
// parses it: its parser trusts declared lengths and terminators (a corrupt
// column length could allocate gigabytes, a logical message's content length
// could read past the message into the receive buffer).
func checkBounds(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	switch b[0] {
	case 'R':
		return checkRelation(b)
	case 'M':
		return checkMessage(b)
	}
	return checkTuples(b)
}

// cstring returns the position after the NUL-terminated string at p, or -1.
func cstring(b []byte, p int) int {
	if p > len(b) {
		return -1
	}
	i := bytes.IndexByte(b[p:], 0)
	if i < 0 {
		return -1
	}
	return p + i + 1
}

// checkRelation: 'R', id (4), namespace and name (NUL-terminated), replica
// identity (1), column count (2), then per column flags (1), name, type
// (4) and modifier (4).
func checkRelation(b []byte) error {
	bad := fmt.Errorf("%w: R message: truncated", ErrMalformed)
	p := cstring(b, 5)
	if p < 0 {
		return bad
	}
	if p = cstring(b, p); p < 0 || p+3 > len(b) {
		return bad
	}
	n := int(binary.BigEndian.Uint16(b[p+1:]))
	p += 3
	for i := 0; i < n; i++ {
		if p = cstring(b, p+1); p < 0 || p+8 > len(b) {
			return bad
		}
		p += 8
	}
	return nil
}

// checkMessage: 'M', flags (1), LSN (8), prefix (NUL-terminated), content
// length (4), content: exactly the rest of the message.
func checkMessage(b []byte) error {
	p := cstring(b, 10)
	if p < 0 || p+4 > len(b) || int64(binary.BigEndian.Uint32(b[p:])) != int64(len(b)-p-4) {
		return fmt.Errorf("%w: M message: bad prefix or content length", ErrMalformed)
	}
	return nil
}

// checkTuples walks the tuple data of an insert, update or delete, and a
// truncate's relation count.
func checkTuples(b []byte) error {
	if b[0] == 'T' {
		// Truncate: count (4), options (1), then count relation ids (4
		// each); pglogrepl allocates for the count before reading them.
		if len(b) < 6 || int64(binary.BigEndian.Uint32(b[1:]))*4 > int64(len(b)-6) {
			return fmt.Errorf("%w: T message: relation count beyond the message", ErrMalformed)
		}
		return nil
	}
	if b[0] != 'I' && b[0] != 'U' && b[0] != 'D' {
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
