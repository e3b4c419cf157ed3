package graph

import (
	"errors"
	"fmt"
	"testing"
)

func TestClassifyErrors(t *testing.T) {
	tests := []struct {
		code      int
		token     bool
		rateLimit bool
	}{
		{190, true, false}, {102, true, false}, {10, true, false}, {200, true, false}, {299, true, false},
		{4, false, true}, {17, false, true}, {32, false, true}, {613, false, true}, {80001, false, true},
		{80006, false, true}, {341, false, true}, {100, false, false}, {2, false, false}, {300, false, false},
	}
	for _, tt := range tests {
		err := fmt.Errorf("list conversations of page 1: %w", &APIError{Code: tt.code, HTTPStatus: 400})
		if got := IsTokenError(err); got != tt.token {
			t.Errorf("IsTokenError(code %d) = %v, want %v", tt.code, got, tt.token)
		}
		if got := IsRateLimit(err); got != tt.rateLimit {
			t.Errorf("IsRateLimit(code %d) = %v, want %v", tt.code, got, tt.rateLimit)
		}
	}
	if IsTokenError(errors.New("code 190")) || IsRateLimit(nil) {
		t.Errorf("IsTokenError/IsRateLimit of a non-API error = true, want false")
	}
}

func TestDecodeError(t *testing.T) {
	body := []byte(`{"error":{"message":"Session has expired","type":"OAuthException","code":190,"error_subcode":463,"fbtrace_id":"Axyz"}}`)
	e := decodeError(400, nil, body)
	want := APIError{Code: 190, Subcode: 463, Type: "OAuthException", Message: "Session has expired", FBTraceID: "Axyz", HTTPStatus: 400}
	if *e != want {
		t.Errorf("decodeError() = %+v, want %+v", *e, want)
	}
	if e := decodeError(502, nil, []byte("<html>")); e.HTTPStatus != 502 || !isTransient(e) {
		t.Errorf("decodeError(502, html) = %+v, want a transient error with status 502", *e)
	}
}
