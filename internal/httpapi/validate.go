package httpapi

import (
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/sessionguard/sessionguard/internal/jwtauth"
	"github.com/sessionguard/sessionguard/internal/session"
	"github.com/sessionguard/sessionguard/internal/validation"
)

// sessionJSON is a session as the API shows it: never the token, never the
// hash. Fields a source does not have are left out.
type sessionJSON struct {
	ID        string     `json:"id,omitempty"`
	UserID    string     `json:"user_id,omitempty"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
	// ExpiresAt is the earliest known end of the session with this token.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Role      string     `json:"role,omitempty"`
	AAL       string     `json:"aal,omitempty"`
}

func utc(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// resultJSON shows a valid result.
func resultJSON(r validation.Result) sessionJSON {
	j := sessionJSON{UserID: r.Credential.Subject, ExpiresAt: utc(r.ExpiresAt), Role: r.Credential.Role, AAL: r.Credential.AAL}
	if s := r.Session; s != nil {
		j.ID, j.UserID, j.CreatedAt = s.ID, s.UserID, utc(s.CreatedAt)
	}
	return j
}

// createdJSON shows a session the admin API created.
func createdJSON(s *session.Session) sessionJSON {
	return sessionJSON{ID: s.ID, UserID: s.UserID, CreatedAt: utc(s.CreatedAt), ExpiresAt: utc(s.ExpiresAt)}
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
	token, aerr := parseValidateRequest(r.Header.Get("Authorization"), body, a.o.MaxTokenLen)
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
		// Unknown, revoked, expired and badly signed look the same: telling
		// them apart would help whoever holds a stolen or forged token.
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, invalidBody{Valid: false, Error: "invalid_token"})
		return
	}
	writeJSON(w, http.StatusOK, validBody{Valid: true, Session: resultJSON(res), Source: string(res.Source)})
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
// Authorization header, else the access token in Supabase's session cookie
// (when enabled), else the session cookie. A non-Bearer Authorization
// header (Basic for an upstream app, say) is not ours and is passed over.
// bad is set when a Supabase cookie is there but holds no access token.
func (a *api) forwardAuthToken(r *http.Request) (token string, found, bad bool) {
	if t, _, ok := bearerToken(r.Header.Get("Authorization")); ok {
		return t, true, false
	}
	if a.o.SupabaseCookie {
		name, err := a.o.SupabaseCookieName, error(nil)
		if name == "" {
			name, err = jwtauth.FindSupabaseCookie(r)
		}
		var t string
		if err == nil {
			t, err = jwtauth.CookieAccessToken(r, name)
		}
		switch {
		case err == nil:
			return t, true, false
		case !errors.Is(err, jwtauth.ErrNoCookie):
			a.log.Debug("supabase session cookie refused", zap.String("cookie", name), zap.Error(err))
			return "", true, true
		}
	}
	if c, err := r.Cookie(a.o.SessionCookie); err == nil && c.Value != "" {
		return c.Value, true, false
	}
	return "", false, false
}

// forwardAuth is /v1/auth for reverse proxies (nginx auth_request, Traefik
// ForwardAuth, Envoy ext_authz, Caddy forward_auth). Any method is accepted,
// as ext_authz forwards the original one. Proxies treat any status other
// than 2xx, 401 and 403 as an error, so a malformed token is 401 here, not
// 400.
func (a *api) forwardAuth(w http.ResponseWriter, r *http.Request) {
	token, found, bad := a.forwardAuthToken(r)
	if !found {
		w.Header().Set("WWW-Authenticate", `Bearer`)
		writeError(w, http.StatusUnauthorized, "missing_token", "no bearer token and no session cookie")
		return
	}
	if bad || checkToken(token, a.o.MaxTokenLen) != nil {
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
	j := resultJSON(res)
	for name, v := range map[string]string{"X-Session-Id": j.ID, "X-User-Id": j.UserID, "X-User-Role": j.Role, "X-User-Aal": j.AAL} {
		if v != "" {
			h.Set(name, v)
		}
	}
	if j.ExpiresAt != nil {
		h.Set("X-Session-Expires-At", j.ExpiresAt.Format(time.RFC3339))
	}
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}
