package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/sessionguard/sessionguard/internal/session"
)

// Limits of the API.
const (
	// MaxBodyBytes caps every request body: room for the largest token
	// (source.MaxJWTLen) in JSON.
	MaxBodyBytes = 16 << 10
	// DefaultTTL is the life of a session created without "ttl".
	DefaultTTL = 24 * time.Hour
	// MinTTL is the shortest session the admin API creates: shorter ones
	// would be expired before the answer reaches the caller.
	MinTTL = time.Second
	// MaxTTL is the longest session the admin API creates.
	MaxTTL = 366 * 24 * time.Hour
)

// apiError is a client-facing failure: an HTTP status and the JSON body's
// "error" code and "message". Parsing functions return it so the fuzz target
// can check them without a server.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func badRequest(format string, args ...any) *apiError {
	return &apiError{Status: 400, Code: "invalid_request", Message: fmt.Sprintf(format, args...)}
}

var errTooLarge = &apiError{Status: 413, Code: "request_too_large",
	Message: fmt.Sprintf("request body is larger than %d bytes", MaxBodyBytes)}

// bearerToken extracts the credentials of an "Authorization: Bearer <t>"
// header value. present is false when the header is empty; ok is false when
// it is present but is not a Bearer header with a token. The scheme is
// case-insensitive (RFC 9110); surrounding blanks are ignored.
func bearerToken(header string) (token string, present, ok bool) {
	h := strings.TrimSpace(header)
	if h == "" {
		return "", false, false
	}
	scheme, rest, found := strings.Cut(h, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", true, false
	}
	token = strings.TrimLeft(rest, " ")
	return token, true, token != ""
}

// validateBody is the JSON body of POST /v1/sessions/validate. Unknown
// fields are ignored (clients may send more than we read); a missing or
// misspelt "token" still fails, as "no token".
type validateBody struct {
	Token *string `json:"token"`
}

// parseValidateRequest finds the token of a validation request in the
// Authorization header value and the body (already capped by the caller).
// Both may carry it; if both do, they must agree.
// Tokens longer than maxLen bytes are refused.
func parseValidateRequest(authHeader string, body []byte, maxLen int) (string, *apiError) {
	headerTok, present, ok := bearerToken(authHeader)
	if present && !ok {
		return "", badRequest("the Authorization header must be \"Bearer <token>\"")
	}
	var bodyTok *string
	if len(bytes.TrimSpace(body)) > 0 {
		var vb validateBody
		if err := decodeJSON(body, &vb, false); err != nil {
			return "", err
		}
		bodyTok = vb.Token
	}
	var token string
	switch {
	case present && bodyTok != nil:
		if *bodyTok != headerTok {
			return "", badRequest("the Authorization header and the body carry different tokens")
		}
		token = headerTok
	case present:
		token = headerTok
	case bodyTok != nil:
		token = *bodyTok
	default:
		return "", badRequest("no token: send \"Authorization: Bearer <token>\" or {\"token\":\"...\"}")
	}
	if err := checkToken(token, maxLen); err != nil {
		return "", err
	}
	return token, nil
}

func checkToken(token string, maxLen int) *apiError {
	if session.CheckToken(token, maxLen) != nil {
		if token == "" {
			return badRequest("the token is empty")
		}
		return badRequest("the token is longer than %d bytes", maxLen)
	}
	return nil
}

// decodeJSON decodes exactly one JSON object from body into v.
func decodeJSON(body []byte, v any, strict bool) *apiError {
	dec := json.NewDecoder(bytes.NewReader(body))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return badRequest("body is not valid JSON (at byte %d)", syn.Offset)
		case errors.As(err, &typ):
			if typ.Field != "" {
				return badRequest("field %q has the wrong type", typ.Field)
			}
			return badRequest("body must be a JSON object")
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return badRequest("%s", strings.TrimPrefix(err.Error(), "json: "))
		default:
			// io.ErrUnexpectedEOF and friends. The message of a JSON error
			// never echoes string values, so no token can leak through it.
			return badRequest("body is not valid JSON")
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("body must hold exactly one JSON object")
	}
	return nil
}

// createBody is the JSON body of POST /v1/sessions. Unknown fields are
// refused: a misspelt "ttl" must not silently become the default.
type createBody struct {
	UserID string  `json:"user_id"`
	TTL    *string `json:"ttl"`
}

// createRequest is a parsed, checked POST /v1/sessions.
type createRequest struct {
	UserID string // canonical lower-case form
	TTL    time.Duration
}

func parseCreateRequest(body []byte) (createRequest, *apiError) {
	var cb createBody
	if len(bytes.TrimSpace(body)) == 0 {
		return createRequest{}, badRequest("body required: {\"user_id\":\"<uuid>\",\"ttl\":\"24h\"}")
	}
	if err := decodeJSON(body, &cb, true); err != nil {
		return createRequest{}, err
	}
	uid, err := parseUUID("user_id", cb.UserID)
	if err != nil {
		return createRequest{}, err
	}
	req := createRequest{UserID: uid, TTL: DefaultTTL}
	if cb.TTL != nil {
		d, perr := time.ParseDuration(*cb.TTL)
		switch {
		case perr != nil:
			return createRequest{}, badRequest("ttl is not a duration (examples: 30m, 24h, 720h)")
		case d < MinTTL:
			return createRequest{}, badRequest("ttl must be at least %s", MinTTL)
		case d > MaxTTL:
			return createRequest{}, badRequest("ttl must be at most %s", MaxTTL)
		}
		req.TTL = d
	}
	return req, nil
}

// parseID checks a session or user id of the path: a UUID where the source
// says so, else 1-255 visible ASCII characters (Postgres decides the rest).
func (a *api) parseID(field, s string) (string, *apiError) {
	if a.o.UUIDIDs {
		return parseUUID(field, s)
	}
	if s == "" || len(s) > 255 {
		return "", badRequest("%s must be 1-255 characters", field)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return "", badRequest("%s must be visible ASCII", field)
		}
	}
	return s, nil
}

// parseUUID accepts the canonical 36-character form only (what Postgres
// prints) and returns it lower-cased.
func parseUUID(field, s string) (string, *apiError) {
	if len(s) != 36 {
		return "", badRequest("%s must be a UUID like 7d444840-9dc0-11d1-b245-5ffdce74fad2", field)
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return "", badRequest("%s must be a UUID like 7d444840-9dc0-11d1-b245-5ffdce74fad2", field)
	}
	return u.String(), nil
}
