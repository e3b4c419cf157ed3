package graphsim

import (
	"fmt"
	"net/http"
)

// apiError is a Graph API error; its body is {"error":{"message","type","code",
// "error_subcode","fbtrace_id"}} (spec section 6).
type apiError struct {
	status  int // HTTP status
	message string
	typ     string
	code    int
	subcode int
	header  http.Header // extra headers, e.g. usage headers on a throttled call
}

func (e *apiError) Error() string {
	return fmt.Sprintf("graph error code %d subcode %d: %s", e.code, e.subcode, e.message)
}

func (e *apiError) body(trace string) map[string]any {
	return map[string]any{"error": map[string]any{"message": e.message, "type": e.typ, "code": e.code,
		"error_subcode": e.subcode, "fbtrace_id": trace}}
}

func errNoToken() *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "OAuthException", code: 104,
		message: "An access token is required to request this resource."}
}

func errBadToken() *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "OAuthException", code: 190,
		message: "Invalid OAuth access token - Cannot parse access token"}
}

func errExpired() *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "OAuthException", code: 190, subcode: 463,
		message: "Error validating access token: Session has expired on Wednesday, 31-Dec-25 16:00:00 PST."}
}

func errNeedPageToken() *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "OAuthException", code: 190,
		message: "(#190) This method must be called with a Page Access Token"}
}

func errWrongPage(pageID string) *apiError {
	return &apiError{status: http.StatusForbidden, typ: "OAuthException", code: 200,
		message: fmt.Sprintf("(#200) The Page access token does not belong to Page %s", pageID)}
}

func errNoObject(id string) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "GraphMethodException", code: 100, subcode: 33,
		message: fmt.Sprintf("Unsupported get request. Object with ID '%s' does not exist, cannot be loaded "+
			"due to missing permissions, or does not support this operation. Please read the Graph API "+
			"documentation at https://developers.facebook.com/docs/graph-api", id)}
}

func errOldMessage(id string) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "OAuthException", code: 100,
		message: fmt.Sprintf("(#100) Message %s has been deleted: only the 20 most recent messages of a "+
			"conversation can be read", id)}
}

func errParam(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "OAuthException", code: 100,
		message: "(#100) " + fmt.Sprintf(format, args...)}
}

func errNoField(field, node string) *apiError {
	return errParam("Tried accessing nonexisting field (%s) on node type (%s)", field, node)
}

func errUnsupported(method string) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "GraphMethodException", code: 100, subcode: 33,
		message: fmt.Sprintf("Unsupported %s request.", method)}
}

func errUnknownPath(path string) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "OAuthException", code: 2500,
		message: "Unknown path components: /" + path}
}

func errTooMuchData() *apiError {
	return &apiError{status: http.StatusInternalServerError, typ: "OAuthException", code: 1,
		message: "Please reduce the amount of data you're asking for, then retry your request"}
}

func errTransient() *apiError {
	return &apiError{status: http.StatusInternalServerError, typ: "OAuthException", code: 2,
		message: "An unexpected error has occurred. Please retry your request later."}
}

func errPageThrottled(h http.Header) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "OAuthException", code: 80001, header: h,
		message: "(#80001) There have been too many calls to this Page account. Wait a bit and try again. " +
			"For more info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting."}
}

func errAppThrottled(h http.Header) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "OAuthException", code: 4, header: h,
		message: "(#4) Application request limit reached"}
}
