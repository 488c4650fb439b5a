package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"

	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/validation"
)

// hashSecret maps a secret to a fixed length, so the constant-time
// comparison does not reveal the admin token's length either.
func hashSecret(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// adminOnly guards an admin endpoint: 404 when the admin API is disabled
// (it does not exist), 401 without the right bearer token.
func (a *api) adminOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.hasAdm || a.o.Admin == nil {
			writeError(w, http.StatusNotFound, "not_found", "no such endpoint")
			return
		}
		tok, _, ok := bearerToken(r.Header.Get("Authorization"))
		got := hashSecret(tok)
		if subtle.ConstantTimeCompare(got[:], a.admin[:]) != 1 || !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sessionguard-admin"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "admin endpoints need \"Authorization: Bearer <ADMIN_TOKEN>\"")
			return
		}
		h(w, r)
	}
}

type createdBody struct {
	Token   string      `json:"token"`
	Session sessionJSON `json:"session"`
}

// noCreate is /v1/sessions for a source whose sessions its own auth server
// creates (Supabase): 405 to every method, with an empty Allow.
func (a *api) noCreate(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Allow", "")
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed",
		"sessions of this source are created by the app that owns its table, not through this API")
}

// noUsers is /v1/users/{user_id}/sessions for a table without a user
// column (connect-pg-simple, Django): 405 to every method.
func (a *api) noUsers(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Allow", "")
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed",
		"this source's sessions table has no user column: revoke sessions one by one")
}

// createSession is POST /v1/sessions.
func (a *api) createSession(w http.ResponseWriter, r *http.Request) {
	body, aerr := readBody(r)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	req, aerr := parseCreateRequest(body)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	token, sess, err := a.o.Admin.Create(r.Context(), req.UserID, req.TTL)
	if err != nil {
		a.adminFailed(w, "create session", err)
		return
	}
	a.log.Info("session created by admin API",
		zap.String("session_id", sess.ID), zap.String("user_id", sess.UserID), zap.Time("expires_at", sess.ExpiresAt))
	writeJSON(w, http.StatusCreated, createdBody{Token: token, Session: createdJSON(sess)})
}

// revokeSession is DELETE /v1/sessions/{id}. Revoking an already revoked
// session succeeds again (204): the request is idempotent.
func (a *api) revokeSession(w http.ResponseWriter, r *http.Request) {
	id, aerr := a.parseID("session id", r.PathValue("id"))
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	err := a.o.Admin.Revoke(r.Context(), id)
	switch {
	case errors.Is(err, validation.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no session with this id")
		return
	case errors.Is(err, validation.ErrCacheInvalidation):
		a.log.Warn("session revoked in postgres, but its cache entry could not be dropped",
			zap.String("session_id", id), zap.Error(err))
		writeJSON(w, http.StatusServiceUnavailable, cacheFailedBody(nil))
		return
	case err != nil:
		a.adminFailed(w, "revoke session", err)
		return
	}
	a.log.Info("session revoked by admin API", zap.String("session_id", id))
	w.WriteHeader(http.StatusNoContent)
}

type revokedBody struct {
	Revoked int `json:"revoked"`
}

// revokeUser is DELETE /v1/users/{user_id}/sessions.
func (a *api) revokeUser(w http.ResponseWriter, r *http.Request) {
	uid, aerr := a.parseID("user id", r.PathValue("user_id"))
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	n, err := a.o.Admin.RevokeUser(r.Context(), uid)
	switch {
	case errors.Is(err, validation.ErrCacheInvalidation):
		a.log.Warn("user's sessions revoked in postgres, but their cache entries could not be dropped",
			zap.String("user_id", uid), zap.Int("revoked", n), zap.Error(err))
		writeJSON(w, http.StatusServiceUnavailable, cacheFailedBody(&n))
		return
	case err != nil:
		a.adminFailed(w, "revoke user sessions", err)
		return
	}
	a.log.Info("user's sessions revoked by admin API", zap.String("user_id", uid), zap.Int("revoked", n))
	writeJSON(w, http.StatusOK, revokedBody{Revoked: n})
}

type cacheFailed struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Revoked *int   `json:"revoked,omitempty"`
}

// cacheFailedBody explains a committed revocation whose cache entries could
// not be dropped. n is nil for one session, the count for a user. Retrying
// either request drops the entries again.
func cacheFailedBody(n *int) cacheFailed {
	msg := "the revocation is committed in Postgres, but the cache entry could not be dropped; " +
		"retrying this request is safe and drops it again (the invalidator also drops it once Redis answers)"
	if n != nil {
		msg = "the revocations are committed in Postgres, but their cache entries could not be dropped; " +
			"retrying this request is safe and drops them again (the invalidator also drops them once Redis answers)"
	}
	return cacheFailed{Error: "cache_invalidation_failed", Message: msg, Revoked: n}
}

func (a *api) adminFailed(w http.ResponseWriter, what string, err error) {
	if errors.Is(err, validation.ErrInvalidInput) {
		writeAPIError(w, badRequest("postgres refused a value of the request"))
		return
	}
	a.log.Error("admin request failed", zap.String("op", what), zap.Error(err))
	writeError(w, http.StatusServiceUnavailable, "unavailable", "postgres did not answer, so the request may not have taken effect; retry it (revocations are idempotent)")
}
