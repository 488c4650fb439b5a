package cache

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/sessionguard/sessionguard/internal/session"
)

// Value encoding, kept compact and free of the token:
//
//	positive: 1|<id>|<user_id>|<created µs>|<expires µs>|<revoked µs or empty>
//	negative: 0
const negativeValue = "0"

var errBadEntry = errors.New("bad cache entry")

func encodeEntry(s *session.Session) string {
	var b strings.Builder
	b.Grow(128)
	b.WriteString("1|")
	b.WriteString(s.ID)
	b.WriteByte('|')
	b.WriteString(s.UserID)
	b.WriteByte('|')
	b.WriteString(strconv.FormatInt(s.CreatedAt.UnixMicro(), 10))
	b.WriteByte('|')
	b.WriteString(strconv.FormatInt(s.ExpiresAt.UnixMicro(), 10))
	b.WriteByte('|')
	if s.RevokedAt != nil {
		b.WriteString(strconv.FormatInt(s.RevokedAt.UnixMicro(), 10))
	}
	return b.String()
}

func decodeEntry(v string) (*Entry, error) {
	if v == negativeValue {
		return &Entry{Negative: true}, nil
	}
	parts := strings.Split(v, "|")
	if len(parts) != 6 || parts[0] != "1" {
		return nil, errBadEntry
	}
	e := &Entry{Session: session.Session{ID: parts[1], UserID: parts[2]}}
	var err error
	if e.Session.CreatedAt, err = parseMicros(parts[3]); err != nil {
		return nil, errBadEntry
	}
	if e.Session.ExpiresAt, err = parseMicros(parts[4]); err != nil {
		return nil, errBadEntry
	}
	if parts[5] != "" {
		t, err := parseMicros(parts[5])
		if err != nil {
			return nil, errBadEntry
		}
		e.Session.RevokedAt = &t
	}
	return e, nil
}

func parseMicros(s string) (time.Time, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMicro(n).UTC(), nil
}
