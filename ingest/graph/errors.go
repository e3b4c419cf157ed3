package graph

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// APIError is an error answer of the Graph API: {"error":{"message","type","code",
// "error_subcode","fbtrace_id","is_transient"}} (spec section 6).
type APIError struct {
	Code       int
	Subcode    int
	Type       string
	Message    string
	FBTraceID  string
	Transient  bool // is_transient
	HTTPStatus int
	// RegainAfter is estimated_time_to_regain_access from the usage headers of a
	// throttled answer; 0 when not given.
	RegainAfter time.Duration
	// RegainGiven says Meta gave estimated_time_to_regain_access, even as 0 minutes.
	RegainGiven bool
}

func (e *APIError) Error() string {
	s := "graph api error code " + strconv.Itoa(e.Code)
	if e.Subcode != 0 {
		s += " subcode " + strconv.Itoa(e.Subcode)
	}
	if e.Type != "" {
		s += " (" + e.Type + ")"
	}
	s += ", http " + strconv.Itoa(e.HTTPStatus)
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.FBTraceID != "" {
		s += " [fbtrace_id " + e.FBTraceID + "]"
	}
	return s
}

// ErrIncomplete is the error of a batch operation that came back null more than
// MaxRetries times.
var ErrIncomplete = errors.New("batch operation not completed")

// IsTokenError reports whether err is a token or permission problem: the token is
// invalid or expired (190, 102) or lacks a permission (10, 200-299). Retrying is
// useless; the Page needs a new token.
func IsTokenError(err error) bool {
	var e *APIError
	if !errors.As(err, &e) {
		return false
	}
	return e.Code == 190 || e.Code == 102 || e.Code == 10 || (e.Code >= 200 && e.Code <= 299)
}

// IsRateLimit reports whether err is a rate-limit answer (4, 17, 32, 613, 80001, 80006,
// 341).
func IsRateLimit(err error) bool {
	var e *APIError
	return errors.As(err, &e) && isRateLimitCode(e.Code)
}

func isRateLimitCode(code int) bool {
	switch code {
	case 4, 17, 32, 613, 80001, 80006, 341:
		return true
	}
	return false
}

// isTransient reports whether an answer is worth retrying soon: a service hiccup.
func isTransient(e *APIError) bool {
	return !isRateLimitCode(e.Code) && !IsTokenError(e) &&
		(e.Transient || e.Code == 1 || e.Code == 2 || e.HTTPStatus >= 500)
}

// isAppScope reports whether a rate-limit code pauses the whole app, not one token.
func isAppScope(code int) bool { return code == 4 || code == 341 }

// decodeError builds the APIError of a non-200 answer; a body that is not a Graph error
// (a proxy's 502 page) still gives an APIError with the status.
func decodeError(status int, header http.Header, body []byte) *APIError {
	var v struct {
		Error *struct {
			Message     string `json:"message"`
			Type        string `json:"type"`
			Code        int    `json:"code"`
			Subcode     int    `json:"error_subcode"`
			FBTraceID   string `json:"fbtrace_id"`
			IsTransient bool   `json:"is_transient"`
		} `json:"error"`
	}
	e := &APIError{HTTPStatus: status}
	if json.Unmarshal(body, &v) == nil && v.Error != nil {
		e.Code, e.Subcode, e.Type = v.Error.Code, v.Error.Subcode, v.Error.Type
		e.Message, e.FBTraceID, e.Transient = v.Error.Message, v.Error.FBTraceID, v.Error.IsTransient
	} else {
		e.Message = fmt.Sprintf("unexpected answer (%d bytes)", len(body))
	}
	if u, ok := parseUsage(header); ok {
		e.RegainAfter, e.RegainGiven = u.regain, u.regainGiven
	}
	return e
}
