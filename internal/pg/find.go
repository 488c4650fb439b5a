package pg

import (
	"context"
	"fmt"

	"github.com/sessionguard/sessionguard/internal/session"
)

// Probe names the row a cache entry stands for: the entry's key hash, and
// the session id a positive entry holds ("" for a negative entry, which
// holds none).
type Probe struct {
	Hash session.Hash
	ID   string
}

// Indexed reports whether Find reaches p's row through an index: by the
// key when the table holds the hash itself, else by the id a positive
// entry holds in clear. The others (negative entries, every entry of a
// table whose id is the secret key, source.Table.SecretID) can only be
// found by hashing every row's key: one sequential scan of the table per
// Find, however many such probes it has.
func (s *Store) Indexed(p Probe) bool {
	return s.t.KeyIsHash || (p.ID != "" && !s.t.SecretID)
}

// Find reads, for each probe, the row a validator's Lookup of the token
// behind its key hash reads now: Found.Session nil when no row has that key
// (deleted, or moved to another key).
func (s *Store) Find(ctx context.Context, probes []Probe) ([]Found, error) {
	out := make([]Found, len(probes))
	var scan []int
	for i, p := range probes {
		var err error
		switch {
		case s.t.KeyIsHash:
			out[i], err = s.Lookup(ctx, session.Key{Hash: p.Hash})
		case !s.Indexed(p):
			scan = append(scan, i)
		case s.t.ByID:
			out[i], err = s.findByID(ctx, p)
		default:
			// The id is the key itself: found by it, if it names this entry.
			if k := s.t.KeyOf(p.ID); k.Hash == p.Hash {
				out[i], err = s.Lookup(ctx, k)
			} else {
				scan = append(scan, i)
			}
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
