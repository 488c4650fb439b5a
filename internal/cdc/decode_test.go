package cdc

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/source"
)

// Crafted pgoutput messages: the real server cannot be made to send a
// malformed one, so these are built by hand.

var ownTable, _ = source.TableOf(source.Sessionguard)

var sessionsColumns = []string{"id", "user_id", "token_hash", "created_at", "updated_at", "expires_at", "revoked_at"}

// relationMsg is a relation message of public.name.
func relationMsg(id uint32, name string, cols []string) []byte {
	return relationMsgIn(id, "public", name, cols)
}

func relationMsgIn(id uint32, schema, name string, cols []string) []byte {
	b := []byte{'R'}
	b = binary.BigEndian.AppendUint32(b, id)
	b = append(b, schema+"\x00"...)
	b = append(b, name+"\x00"...)
	b = append(b, 'i')
	b = binary.BigEndian.AppendUint16(b, uint16(len(cols)))
	for _, c := range cols {
		b = append(b, 0)
		b = append(b, c+"\x00"...)
		b = binary.BigEndian.AppendUint32(b, 25)
		b = binary.BigEndian.AppendUint32(b, 0xffffffff)
	}
	return b
}

// tuple encodes values: nil is NULL, "\x00u" is unchanged TOAST.
func tuple(vals ...*string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(vals)))
	for _, v := range vals {
		switch {
		case v == nil:
			b = append(b, 'n')
		case *v == "\x00u":
			b = append(b, 'u')
		default:
			b = append(b, 't')
			b = binary.BigEndian.AppendUint32(b, uint32(len(*v)))
			b = append(b, *v...)
		}
	}
	return b
}

func s(v string) *string { return &v }

func hexOf(h session.Hash) string { return `\x` + h.Hex() }

// row is a full sessions row (sessionsColumns order).
func row(h session.Hash, expires string, revoked *string) []byte {
	return tuple(s("0b7f3c4e-8a39-4f0e-9d5c-6f1e2a3b4c5d"), s("1c7f3c4e-8a39-4f0e-9d5c-6f1e2a3b4c5d"), s(hexOf(h)),
		s("2026-01-01 00:00:00+00"), s("2026-01-01 00:00:00+00"), s(expires), revoked)
}

// keyTuple is a replica identity key tuple: only token_hash is sent.
func keyTuple(h session.Hash) []byte { return tuple(nil, nil, s(hexOf(h)), nil, nil, nil, nil) }

func insertMsg(rel uint32, h session.Hash, expires string) []byte {
	return append(binary.BigEndian.AppendUint32([]byte{'I'}, rel), append([]byte{'N'}, row(h, expires, nil)...)...)
}

// updateMsg is an update; old is omitted when oldKind is 0.
func updateMsg(rel uint32, oldKind byte, old, newRow []byte) []byte {
	b := binary.BigEndian.AppendUint32([]byte{'U'}, rel)
	if oldKind != 0 {
		b = append(append(b, oldKind), old...)
	}
	return append(append(b, 'N'), newRow...)
}

func deleteMsg(rel uint32, h session.Hash) []byte {
	return append(binary.BigEndian.AppendUint32([]byte{'D'}, rel), append([]byte{'K'}, keyTuple(h)...)...)
}

func truncateMsg(rels ...uint32) []byte {
	b := binary.BigEndian.AppendUint32([]byte{'T'}, uint32(len(rels)))
	b = append(b, 0)
	for _, r := range rels {
		b = binary.BigEndian.AppendUint32(b, r)
	}
	return b
}

// logicalMsg is pg_logical_emit_message(transactional, prefix, content).
func logicalMsg(transactional bool, lsn uint64, prefix string, content []byte) []byte {
	b := []byte{'M', 0}
	if transactional {
		b[1] = 1
	}
	b = binary.BigEndian.AppendUint64(b, lsn)
	b = append(b, prefix+"\x00"...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(content)))
	return append(b, content...)
}

// sessionsDecoder is a decoder of public.sessions that has seen relation 7
// (public.sessions).
func sessionsDecoder(t testing.TB) *Decoder {
	t.Helper()
	d := NewDecoder(ownTable, "public", "sessions")
	if _, err := d.Decode(relationMsg(7, "sessions", sessionsColumns)); err != nil {
		t.Fatal(err)
	}
	return d
}

const (
	future = "2026-07-01 12:30:00.123456+00"
	past   = "2026-05-01 00:00:00+00"
)

func TestDecodeRowChanges(t *testing.T) {
	t.Parallel()
	h1, h2 := session.HashToken("one"), session.HashToken("two")
	wantExp := time.Date(2026, 7, 1, 12, 30, 0, 123456000, time.UTC)
	revokedAt := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	toasted := tuple(s("0b7f3c4e-8a39-4f0e-9d5c-6f1e2a3b4c5d"), s("x"), s(hexOf(h1)), s("\x00u"), nil, s(future), nil)
	cases := []struct {
		name     string
		msg      []byte
		op       RowOp
		old, new *session.Hash
		row      bool       // Row is set
		expires  time.Time  // of Row
		revoked  *time.Time // of Row
	}{
		{"insert", insertMsg(7, h1, future), OpInsert, nil, &h1, false, time.Time{}, nil},
		{"delete", deleteMsg(7, h1), OpDelete, &h1, nil, false, time.Time{}, nil},
		{"update, same key", updateMsg(7, 0, nil, row(h1, future, nil)), OpUpdate, nil, &h1, true, wantExp, nil},
		{"update, revoked", updateMsg(7, 0, nil, row(h1, future, s("2026-06-01 00:00:00+00"))), OpUpdate, nil, &h1, true, wantExp, &revokedAt},
		{"update, key changed", updateMsg(7, 'K', keyTuple(h1), row(h2, future, nil)), OpUpdate, &h1, &h2, true, wantExp, nil},
		{"update, full identity", updateMsg(7, 'O', row(h1, past, nil), row(h1, future, nil)), OpUpdate, &h1, &h1, true, wantExp, nil},
		{"update, unchanged toast: no row", updateMsg(7, 0, nil, toasted), OpUpdate, nil, &h1, false, time.Time{}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev, err := sessionsDecoder(t).Decode(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			ch := ev.Change
			if ev.Kind != KindRow || ch.Op != tc.op {
				t.Fatalf("kind %v op %q, want row %q", ev.Kind, ch.Op, tc.op)
			}
			if !sameKey(ch.OldKey, tc.old) || !sameKey(ch.NewKey, tc.new) {
				t.Fatalf("old %v new %v, want %v %v", ch.OldKey, ch.NewKey, tc.old, tc.new)
			}
			if !tc.row {
				if ch.Row != nil {
					t.Fatalf("row %+v, want none", ch.Row)
				}
				return
			}
			if ch.Row == nil {
				t.Fatal("no row")
			}
			if ch.Row.ID != "0b7f3c4e-8a39-4f0e-9d5c-6f1e2a3b4c5d" || ch.Row.UserID != "1c7f3c4e-8a39-4f0e-9d5c-6f1e2a3b4c5d" ||
				!ch.Row.CreatedAt.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) || !ch.Row.ExpiresAt.Equal(tc.expires) {
				t.Fatalf("row %+v", ch.Row)
			}
			if (ch.Row.RevokedAt == nil) != (tc.revoked == nil) || (tc.revoked != nil && !ch.Row.RevokedAt.Equal(*tc.revoked)) {
				t.Fatalf("revoked_at %v, want %v", ch.Row.RevokedAt, tc.revoked)
			}
		})
	}
}

func sameKey(a, b *session.Hash) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

func TestDecodeTransactionsTruncatesAndMessages(t *testing.T) {
	t.Parallel()
	h := session.HashToken("x")
	d := sessionsDecoder(t)
	for _, m := range [][]byte{
		relationMsg(9, "audit", []string{"id"}),
		relationMsgIn(11, "other", "sessions", sessionsColumns), // same name, another schema: not ours
	} {
		if ev, err := d.Decode(m); err != nil || ev.Kind != KindIgnore {
			t.Fatalf("relation: %+v %v", ev, err)
		}
	}
	cases := []struct {
		name string
		msg  []byte
		want Event
	}{
		{"begin", beginMsg(0x500, 42), Event{Kind: KindBegin, Xid: 42}},
		{"commit", commitMsg(0x4f0, 0x500), Event{Kind: KindCommit, EndLSN: 0x500}},
		{"other table", append([]byte{'I', 0, 0, 0, 9, 'N'}, tuple(s("1"))...), Event{Kind: KindIgnore}},
		{"sessions of schema other: insert", insertMsg(11, h, future), Event{Kind: KindIgnore}},
		{"sessions of schema other: delete", deleteMsg(11, h), Event{Kind: KindIgnore}},
		{"sessions of schema other: truncate", truncateMsg(11), Event{Kind: KindIgnore}},
		{"truncate of another table", truncateMsg(9), Event{Kind: KindIgnore}},
		{"truncate of ours", truncateMsg(7), Event{Kind: KindTruncate}},
		{"truncate of ours among others", truncateMsg(9, 11, 7), Event{Kind: KindTruncate}},
		{"transactional message", logicalMsg(true, 42, "p", []byte("hello")), Event{Kind: KindMessage, Prefix: "p", Content: []byte("hello")}},
		{"non-transactional message", logicalMsg(false, 42, HeartbeatPrefix, []byte("hello")), Event{Kind: KindIgnore}},
		{"type message", append(binary.BigEndian.AppendUint32([]byte{'Y'}, 1234), "public\x00t\x00"...), Event{Kind: KindIgnore}},
	}
	for _, tc := range cases {
		ev, err := d.Decode(tc.msg)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if ev.Kind != tc.want.Kind || ev.Xid != tc.want.Xid || ev.EndLSN != tc.want.EndLSN ||
			ev.Prefix != tc.want.Prefix || string(ev.Content) != string(tc.want.Content) {
			t.Fatalf("%s: got %+v, want %+v", tc.name, ev, tc.want)
		}
	}
}

func TestDecodeOtherSchemaOnly(t *testing.T) {
	t.Parallel()
	// A decoder of schema "other" ignores public.sessions and takes other.sessions.
	d := NewDecoder(ownTable, "other", "sessions")
	h := session.HashToken("x")
	for _, m := range [][]byte{relationMsg(7, "sessions", sessionsColumns), relationMsgIn(11, "other", "sessions", sessionsColumns)} {
		if _, err := d.Decode(m); err != nil {
			t.Fatal(err)
		}
	}
	if ev, err := d.Decode(insertMsg(7, h, future)); err != nil || ev.Kind != KindIgnore {
		t.Fatalf("public.sessions: %+v %v", ev, err)
	}
	if ev, err := d.Decode(insertMsg(11, h, future)); err != nil || ev.Kind != KindRow || !sameKey(ev.Change.NewKey, &h) {
		t.Fatalf("other.sessions: %+v %v", ev, err)
	}
}

func TestDecodeMalformedNeverPanics(t *testing.T) {
	t.Parallel()
	h := session.HashToken("x")
	cases := map[string][]byte{
		"empty":                         {},
		"unknown type":                  {'Z', 1, 2},
		"truncated insert":              {'I', 0, 0, 0, 7, 'N', 0, 7, 't', 0, 0, 0, 200, 'a'},
		"change before relation":        insertMsg(99, h, "2030-01-01 00:00:00+00"),
		"update before relation":        updateMsg(99, 0, nil, row(h, future, nil)),
		"delete before relation":        deleteMsg(99, h),
		"truncate of unknown relation":  truncateMsg(9, 99),
		"more columns than relation":    append([]byte{'I', 0, 0, 0, 7, 'N'}, tuple(s("a"), s("b"), s(hexOf(h)), s("c"), s("d"), s("e"), s("f"), s("g"))...),
		"short token hash":              append([]byte{'I', 0, 0, 0, 7, 'N'}, tuple(nil, nil, s(`\xabcd`), nil, nil, nil, nil)...),
		"token hash not hex":            append([]byte{'I', 0, 0, 0, 7, 'N'}, tuple(nil, nil, s(`\xzz`), nil, nil, nil, nil)...),
		"null token hash in delete":     append([]byte{'D', 0, 0, 0, 7, 'K'}, tuple(nil, nil, nil, nil, nil, nil, nil)...),
		"bad timestamp":                 updateMsg(7, 0, nil, row(h, "tomorrow-ish", nil)),
		"truncated relation":            relationMsg(8, "sessions", sessionsColumns)[:20],
		"truncate, huge relation count": {'T', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 7},
		"truncated begin":               beginMsg(1, 2)[:10],
		"truncated commit":              commitMsg(1, 2)[:20],
		"message content beyond end":    logicalMsg(true, 1, HeartbeatPrefix, []byte("x"))[:30],
		// Found by FuzzDecode: pglogrepl reads these past the message.
		"relation, short header":       []byte("R0000\x000\x00"),
		"relation cut after names":     relationMsg(8, "sessions", sessionsColumns)[:22],
		"message, huge content length": []byte("M00000000000000"),
		"message, prefix without NUL":  {'M', 1, 0, 0, 0, 0, 0, 0, 0, 1, 'p', 'p', 0, 0, 0, 0},
		// In spare capacity: no panic, a silent read past the message.
		"message content in spare capacity": logicalMsg(true, 1, "p", []byte("hello world"))[:15],
	}
	for name, msg := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := sessionsDecoder(t).Decode(msg)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("want ErrMalformed, got %v", err)
			}
			if strings.Contains(err.Error(), "decoder panic") {
				t.Fatalf("caught only by the panic recovery: %v", err)
			}
		})
	}
	// Random mutations of valid messages: errors are fine, panics are not.
	d := sessionsDecoder(t)
	valid := [][]byte{relationMsg(7, "sessions", sessionsColumns), insertMsg(7, h, "2030-01-01 00:00:00+00")}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		m := append([]byte(nil), valid[i%2]...)
		m = m[:r.IntN(len(m)+1)]
		for j := 0; j < 3 && len(m) > 0; j++ {
			m[r.IntN(len(m))] = byte(r.Uint32())
		}
		_, _ = d.Decode(m) // must not panic
	}
}

// A table whose DELETE names only its primary key (Better Auth's: the raw
// token is another column): the id is read and hashed, the token hashed
// with the table's name, and a row without a token has no key.
func TestDecodeByID(t *testing.T) {
	t.Parallel()
	tb, _ := source.TableOf(source.BetterAuth)
	d := NewDecoder(tb, "public", "session")
	cols := []string{"id", "expiresAt", "token", "createdAt", "updatedAt", "ipAddress", "userAgent", "userId"}
	if _, err := d.Decode(relationMsgIn(7, "public", "session", cols)); err != nil {
		t.Fatal(err)
	}
	newRow := func(token *string) []byte {
		return tuple(s("row-1"), s("2030-01-01 00:00:00+00"), token, s("2026-01-01 00:00:00+00"), s("2026-01-01 00:00:00+00"), nil, nil, s("user-1"))
	}
	id, key := tb.IDHash("row-1"), tb.KeyOf("raw-token").Hash
	msg := func(kind byte, tup []byte) []byte {
		return append(binary.BigEndian.AppendUint32([]byte{kind}, 7), append([]byte{'N'}, tup...)...)
	}
	// The DELETE's old tuple holds the primary key; the other columns are null.
	del := append(binary.BigEndian.AppendUint32([]byte{'D'}, 7), append([]byte{'K'}, tuple(s("row-1"), nil, nil, nil, nil, nil, nil, nil)...)...)
	for _, tc := range []struct {
		name string
		msg  []byte
		want RowChange
	}{
		{"insert", msg('I', newRow(s("raw-token"))), RowChange{Op: OpInsert, NewKey: &key}},
		{"insert without a token", msg('I', newRow(nil)), RowChange{Op: OpInsert}},
		{"update", msg('U', newRow(s("raw-token"))), RowChange{Op: OpUpdate, NewKey: &key, ID: &id}},
		{"update to no token", msg('U', newRow(nil)), RowChange{Op: OpUpdate, ID: &id}},
		{"update, token unchanged and toasted", msg('U', newRow(s("\x00u"))), RowChange{Op: OpUpdate, ID: &id}},
		{"delete", del, RowChange{Op: OpDelete, OldID: &id}},
	} {
		ev, err := d.Decode(tc.msg)
		if err != nil || ev.Kind != KindRow {
			t.Fatalf("%s: %+v %v", tc.name, ev, err)
		}
		ch := ev.Change
		eq := func(a, b *session.Hash) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
		if ch.Op != tc.want.Op || !eq(ch.NewKey, tc.want.NewKey) || !eq(ch.ID, tc.want.ID) || !eq(ch.OldID, tc.want.OldID) || ch.OldKey != nil {
			t.Errorf("%s: got %+v", tc.name, ch)
		}
		if tc.want.Op == OpUpdate && (ch.Row == nil || ch.Row.ID != "row-1" || ch.Row.UserID != "user-1") {
			t.Errorf("%s: row %+v", tc.name, ch.Row)
		}
	}
}

// A timestamp without time zone is read in the zone it was written in
// (SESSION_TIMESTAMP_ZONE), UTC by default.
func TestDecodeTimestampZone(t *testing.T) {
	t.Parallel()
	for zone, want := range map[string]string{"": "2030-01-01T00:00:00Z", "America/New_York": "2030-01-01T05:00:00Z"} {
		tb, _ := source.TableOf(source.ConnectPgSimple)
		tb.Zone = zone
		d := NewDecoder(tb, "public", "session")
		if _, err := d.Decode(relationMsgIn(7, "public", "session", []string{"sid", "sess", "expire"})); err != nil {
			t.Fatal(err)
		}
		ev, err := d.Decode(append(binary.BigEndian.AppendUint32([]byte{'U'}, 7), append([]byte{'N'}, tuple(s("sid-1"), s("{}"), s("2030-01-01 00:00:00"))...)...))
		if err != nil || ev.Change.Row == nil {
			t.Fatalf("%q: %+v %v", zone, ev, err)
		}
		if got := ev.Change.Row.ExpiresAt.UTC().Format(time.RFC3339); got != want {
			t.Errorf("zone %q: expire read as %s, want %s", zone, got, want)
		}
	}
}

// BenchmarkDecodeRevocation: one row of a mass revocation (an UPDATE setting
// revoked_at), decoded; the invalidator's per-row cost in a flood.
func BenchmarkDecodeRevocation(b *testing.B) {
	d := sessionsDecoder(b)
	msg := updateMsg(7, 0, nil, row(session.HashToken("t"), future, s("2026-06-01 00:00:00+00")))
	b.ReportAllocs()
	for b.Loop() {
		if ev, err := d.Decode(msg); err != nil || ev.Change.Row == nil {
			b.Fatal(ev, err)
		}
	}
}
