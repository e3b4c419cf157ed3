package graph

import (
	"errors"
	"net/url"
	"regexp"
)

// secretParams matches the value of a parameter that must never reach an error or a log:
// access_token (a Page or user token) and appsecret_proof (an HMAC of it), in a query
// or a fragment, whatever their case, also in a link that does not parse.
var secretParams = regexp.MustCompile(`(?i)((?:^|[?&#;])(?:access_token|appsecret_proof)=)[^&#;]*`)

// redactURL returns link with the values of access_token and appsecret_proof replaced,
// for error texts and logs.
func redactURL(link string) string {
	return secretParams.ReplaceAllString(link, "${1}REDACTED")
}

// redactURLError replaces a *url.Error, which repeats the whole link, by its link
// redacted and its cause. The cause may quote part of the link too ("invalid port
// \":;access_token=…\" after host"): then it is replaced by its text, redacted.
func redactURLError(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	cause := ue.Err
	if msg := cause.Error(); redactURL(msg) != msg {
		cause = errors.New(redactURL(msg))
	}
	return &url.Error{Op: ue.Op, URL: redactURL(ue.URL), Err: cause}
}
