package validation

import (
	"time"

	"github.com/sessionguard/sessionguard/internal/session"
)

// Judge is how a validator answers for session sess (nil: none, or a
// negative entry) presented with cred at now, from the cache and from
// Postgres alike: valid while the rule holds and the row backs what the
// credential claims, until deadline (session.Rule.Deadline).
func Judge(rule session.Rule, sess *session.Session, cred session.Credential, now time.Time) (valid bool, deadline time.Time) {
	if sess == nil || !rule.Valid(sess, now) || !cred.Admits(sess) {
		return false, time.Time{}
	}
	return true, rule.Deadline(sess, cred)
}

// AnswerDiff says what makes a validator answer some credential otherwise
// from session a than from session b at now: "valid" when one is valid and
// the other not; else, both valid, the fields an answer shows or a
// credential is checked against that differ ("id", "user_id",
// "created_at", "expires_at", "aal") and "deadline" when the session ends
// at another time under the rule. Empty: every answer is the same.
func AnswerDiff(rule session.Rule, a, b *session.Session, now time.Time) []string {
	va, da := Judge(rule, a, session.Credential{}, now)
	vb, db := Judge(rule, b, session.Credential{}, now)
	if va != vb {
		return []string{"valid"}
	}
	if !va {
		return nil
	}
	var diff []string
	for _, f := range []struct {
		name string
		same bool
	}{
		{"id", a.ID == b.ID}, {"user_id", a.UserID == b.UserID},
		{"created_at", a.CreatedAt.Equal(b.CreatedAt)}, {"expires_at", a.ExpiresAt.Equal(b.ExpiresAt)},
		{"aal", a.AAL == b.AAL}, {"deadline", da.Equal(db)},
	} {
		if !f.same {
			diff = append(diff, f.name)
		}
	}
	return diff
}
