package httpapi

import (
	"errors"
	"net/http"
	"time"

	"github.com/sessionguard/sessionguard/internal/session"
)

// sessionJSON is a session as the API shows it: never the token, never the
// hash.
type sessionJSON struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

func toJSON(s *session.Session) sessionJSON {
	return sessionJSON{ID: s.ID, UserID: s.UserID, CreatedAt: s.CreatedAt.UTC(), ExpiresAt: s.ExpiresAt.UTC()}
}

type validBody struct {
	Valid   bool        `json:"valid"`
	Session sessionJSON `json:"session"`
	Source  string      `json:"source"`
}

type invalidBody struct {
	Valid bool   `json:"valid"`
	Error string `json:"error"`
}

// validate is POST /v1/sessions/validate.
func (a *api) validate(w http.ResponseWriter, r *http.Request) {
	body, aerr := readBody(r)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	token, aerr := parseValidateRequest(r.Header.Get("Authorization"), body)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	res, err := a.o.Service.Validate(r.Context(), token)
	if err != nil {
		a.validationFailed(w, err)
		return
	}
	if !res.Valid {
		// Unknown, revoked and expired look the same: telling them apart
		// would help whoever holds a stolen or guessed token.
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, invalidBody{Valid: false, Error: "invalid_token"})
		return
	}
	writeJSON(w, http.StatusOK, validBody{Valid: true, Session: toJSON(res.Session), Source: string(res.Source)})
}

func (a *api) validationFailed(w http.ResponseWriter, err error) {
	if errors.Is(err, session.ErrMalformedToken) {
		writeAPIError(w, badRequest("malformed token"))
		return
	}
	// validation.ErrUnavailable, or the request's context ending: the
	// answer is not known. The service has logged the cause.
	writeError(w, http.StatusServiceUnavailable, "unavailable", "the validity of the token cannot be determined right now")
}

// forwardAuthToken picks the token of a forward-auth request: a Bearer
// Authorization header, else the session cookie. A non-Bearer Authorization
// header (Basic for an upstream app, say) is not ours and is passed over.
func (a *api) forwardAuthToken(r *http.Request) (string, bool) {
	if t, _, ok := bearerToken(r.Header.Get("Authorization")); ok {
		return t, true
	}
	if c, err := r.Cookie(a.o.SessionCookie); err == nil && c.Value != "" {
		return c.Value, true
	}
	return "", false
}

// forwardAuth is /v1/auth for reverse proxies (nginx auth_request, Traefik
// ForwardAuth, Envoy ext_authz, Caddy forward_auth). Any method is accepted,
// as ext_authz forwards the original one. Proxies treat any status other
// than 2xx, 401 and 403 as an error, so a malformed token is 401 here, not
// 400.
func (a *api) forwardAuth(w http.ResponseWriter, r *http.Request) {
	token, found := a.forwardAuthToken(r)
	if !found {
		w.Header().Set("WWW-Authenticate", `Bearer`)
		writeError(w, http.StatusUnauthorized, "missing_token", "no bearer token and no session cookie")
		return
	}
	if checkToken(token) != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "invalid_token", "")
		return
	}
	res, err := a.o.Service.Validate(r.Context(), token)
	if err != nil {
		a.validationFailed(w, err)
		return
	}
	if !res.Valid {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "invalid_token", "")
		return
	}
	h := w.Header()
	h.Set("X-Session-Id", res.Session.ID)
	h.Set("X-User-Id", res.Session.UserID)
	h.Set("X-Session-Expires-At", res.Session.ExpiresAt.UTC().Format(time.RFC3339))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}
