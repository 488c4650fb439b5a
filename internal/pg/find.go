package pg

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/sessionguard/sessionguard/internal/session"
)

// Probe names the row a cache entry stands for: the entry's key hash, and
// the session id a positive entry holds ("" for a negative entry, which
// holds none).
type Probe struct {
	Hash session.Hash
	ID   string
}

// route is how Find reads a probe's row.
type route int

const (
	byKey  route = iota // the key column's index: the hash itself, or the id that is the key
	byID                // a ByID table's primary key
	byScan              // hashing every row's key: one sequential scan per Find
	unfit               // the id is no value of its column's type: no row has it
)

// route says how Find reads p's row: by the key when the table holds the
// hash itself; else by the id a positive entry holds in clear, through the
// primary key of a ByID table, or as the key itself when it hashes to p's.
// The others (negative entries, every entry of a table whose id is the
// secret key, source.Table.SecretID, and an id that does not name its
// entry's key) can only be found by hashing every row's key.
func (s *Store) route(p Probe) route {
	switch {
	case s.t.KeyIsHash:
		return byKey
	case p.ID == "" || s.t.SecretID:
		return byScan
	case s.t.ByID && !fits(s.t.ID.Type, p.ID):
		return unfit
	case s.t.ByID:
		return byID
	case s.t.KeyOf(p.ID).Hash != p.Hash:
		return byScan
	case !fits(s.t.Key.Type, p.ID):
		return unfit
	}
	return byKey
}

// fits reports whether v is the text of a value of column type typ as
// Postgres prints it (id::text, as every entry's id was read), so that a
// query passing it cannot fail on the cast.
func fits(typ, v string) bool {
	if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
		return false
	}
	bits := map[string]int{"smallint": 16, "integer": 32, "bigint": 64}[typ]
	switch {
	case typ == "uuid":
		u, err := uuid.Parse(v)
		return err == nil && u.String() == v
	case bits > 0:
		_, err := strconv.ParseInt(v, 10, bits)
		return err == nil
	}
	return true
}

// Indexed reports whether Find reads p's row without a sequential scan
// (through an index, or not at all when p does not Fit).
func (s *Store) Indexed(p Probe) bool { return s.route(p) != byScan }

// Fits reports whether p's id can name a row: false when it is no value of
// the type of the column Find would look it up in (an entry no validator
// wrote). Find refuses such a probe.
func (s *Store) Fits(p Probe) bool { return s.route(p) != unfit }

// Find reads, for each probe, the row a validator's Lookup of the token
// behind its key hash reads now: Found.Session nil when no row has that key
// (deleted, or moved to another key). Every probe must Fit.
func (s *Store) Find(ctx context.Context, probes []Probe) ([]Found, error) {
	out := make([]Found, len(probes))
	var scan []int
	for i, p := range probes {
		var err error
		switch s.route(p) {
		case byKey:
			k := session.Key{Hash: p.Hash}
			if !s.t.KeyIsHash {
				k = s.t.KeyOf(p.ID)
			}
			out[i], err = s.Lookup(ctx, k)
		case byID:
			out[i], err = s.findByID(ctx, p)
		case byScan:
			scan = append(scan, i)
		default:
			err = fmt.Errorf("find session: probe %d does not fit the table (Store.Fits)", i)
		}
		if err != nil {
			return nil, err
		}
	}
	if len(scan) > 0 {
		if err := s.findByHash(ctx, probes, scan, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// findByID reads the row of a ByID table with p's id, and keeps it only
// while its key still hashes to p's.
func (s *Store) findByID(ctx context.Context, p Probe) (Found, error) {
	var (
		f   Found
		r   rowCols
		key []byte
	)
	err := s.pool.QueryRow(ctx, s.q.byID, p.ID).Scan(append(append([]any{&f.Standby, &f.Now}, r.dest()...), &key)...)
	if err != nil {
		return Found{}, fmt.Errorf("find session by id: %w", err)
	}
	if h, ok := s.t.HashOf(key); r.id != nil && ok && h == p.Hash {
		s.fill(&f, r)
	}
	return f, nil
}

// findByHash reads the rows of probes[i] for each i of idx in one query
// (a sequential scan of the table) into out.
func (s *Store) findByHash(ctx context.Context, probes []Probe, idx []int, out []Found) error {
	hashes := make([][]byte, len(idx))
	for j, i := range idx {
		hashes[j] = probes[i].Hash[:]
	}
	rows, err := s.pool.Query(ctx, s.q.byHash, hashes)
	if err != nil {
		return fmt.Errorf("find sessions by key hash: %w", err)
	}
	defer rows.Close()
	found := make(map[session.Hash]Found, len(idx))
	for rows.Next() {
		var (
			f Found
			r rowCols
			h []byte
		)
		if err := rows.Scan(append([]any{&f.Standby, &f.Now, &h}, r.dest()...)...); err != nil {
			return fmt.Errorf("find sessions by key hash: %w", err)
		}
		s.fill(&f, r)
		var k session.Hash
		copy(k[:], h)
		found[k] = f
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("find sessions by key hash: %w", err)
	}
	for _, i := range idx {
		out[i] = found[probes[i].Hash]
	}
	return nil
}
