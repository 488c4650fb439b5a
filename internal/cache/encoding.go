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
//	          2|<id>|<user_id>|<created µs>|<expires µs or empty>|<revoked µs or empty>|<last active µs or empty>|<aal>
//	negative: 0
//
// Version 1 is written whenever it can hold the session (sessionguard's own
// table), so validators of an older release read it during an upgrade. In
// version 2, '%' and '|' in the text fields are percent-escaped.
const negativeValue = "0"

var errBadEntry = errors.New("bad cache entry")

var (
	escaper   = strings.NewReplacer("%", "%25", "|", "%7C")
	unescaper = strings.NewReplacer("%25", "%", "%7C", "|")
)

func encodeEntry(s *session.Session) string {
	v2 := !s.LastActive.IsZero() || s.AAL != "" || s.ExpiresAt.IsZero() ||
		strings.ContainsAny(s.ID+s.UserID, "|%")
	var b strings.Builder
	b.Grow(128)
	micros := func(t time.Time) {
		b.WriteByte('|')
		if !t.IsZero() {
			b.WriteString(strconv.FormatInt(t.UnixMicro(), 10))
		}
	}
	if !v2 {
		b.WriteString("1|")
		b.WriteString(s.ID)
		b.WriteByte('|')
		b.WriteString(s.UserID)
	} else {
		b.WriteString("2|")
		b.WriteString(escaper.Replace(s.ID))
		b.WriteByte('|')
		b.WriteString(escaper.Replace(s.UserID))
	}
	// created_at is always written (a zero one too); the others only when set.
	b.WriteByte('|')
	b.WriteString(strconv.FormatInt(s.CreatedAt.UnixMicro(), 10))
	if !v2 {
		b.WriteByte('|')
		b.WriteString(strconv.FormatInt(s.ExpiresAt.UnixMicro(), 10))
	} else {
		micros(s.ExpiresAt)
	}
	var revoked time.Time
	if s.RevokedAt != nil {
		revoked = *s.RevokedAt
	}
	micros(revoked)
	if v2 {
		micros(s.LastActive)
		b.WriteByte('|')
		b.WriteString(escaper.Replace(s.AAL))
	}
	return b.String()
}

func decodeEntry(v string) (*Entry, error) {
	if v == negativeValue {
		return &Entry{Negative: true}, nil
	}
	parts := strings.Split(v, "|")
	switch {
	case len(parts) == 6 && parts[0] == "1":
	case len(parts) == 8 && parts[0] == "2":
		for _, i := range []int{1, 2, 7} {
			parts[i] = unescaper.Replace(parts[i])
		}
	default:
		return nil, errBadEntry
	}
	e := &Entry{Session: session.Session{ID: parts[1], UserID: parts[2]}}
	times := []*time.Time{&e.Session.CreatedAt, &e.Session.ExpiresAt, nil}
	if parts[0] == "2" {
		times = append(times, &e.Session.LastActive)
		e.Session.AAL = parts[7]
	}
	for i, dst := range times {
		p := parts[3+i]
		if p == "" {
			// Only version 2 has optional times; revoked_at is optional in both.
			if i == 2 || (parts[0] == "2" && i != 0) {
				continue
			}
			return nil, errBadEntry
		}
		t, err := parseMicros(p)
		if err != nil {
			return nil, errBadEntry
		}
		if dst == nil {
			e.Session.RevokedAt = &t
		} else {
			*dst = t
		}
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
