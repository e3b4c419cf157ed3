package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// ValidationError says why a record is not a valid event. Every error Decode returns
// is one: a record that fails will fail again, so it belongs in the dead-letter topic,
// with Error() as the reason.
type ValidationError struct {
	// Field is a dotted path into the record, e.g. "data.mid" or "type"; empty when the
	// record as a whole is wrong (not JSON).
	Field  string
	Reason string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// schemaError turns a jsonschema validation error into a ValidationError about its
// first failing leaf (by path), so the reason is short and stable. prefix is
// the path of the validated value within the record ("" or "data").
func schemaError(prefix string, err error) *ValidationError {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return &ValidationError{Field: prefix, Reason: err.Error()}
	}
	var leaves []*jsonschema.ValidationError
	collectLeaves(ve, &leaves)
	slices.SortStableFunc(leaves, func(a, b *jsonschema.ValidationError) int {
		return slices.Compare(a.InstanceLocation, b.InstanceLocation)
	})
	leaf := leaves[0]
	field := joinPath(prefix, leaf.InstanceLocation...)
	switch k := leaf.ErrorKind.(type) {
	case *kind.Required:
		missing := slices.Sorted(slices.Values(k.Missing))
		reason := "missing property"
		if len(missing) > 1 {
			reason += " (also missing: " + quoteAll(missing[1:]) + ")"
		}
		return &ValidationError{Field: joinPath(field, missing[0]), Reason: reason}
	case *kind.AnyOf:
		return &ValidationError{Field: field, Reason: anyOfReason(leaf)}
	case *kind.Type:
		return &ValidationError{Field: field, Reason: fmt.Sprintf("got %s, want %s", k.Got, strings.Join(k.Want, " or "))}
	case *kind.Format:
		return &ValidationError{Field: field, Reason: fmt.Sprintf("%s is not a valid %s", quote(k.Got), k.Want)}
	case *kind.Enum:
		return &ValidationError{Field: field, Reason: fmt.Sprintf("%s is not one of %s", quote(k.Got), quoteAll(k.Want))}
	case *kind.Pattern:
		return &ValidationError{Field: field, Reason: fmt.Sprintf("%s does not match pattern %s", quote(k.Got), quote(k.Want))}
	case *kind.MinLength:
		if k.Want == 1 {
			return &ValidationError{Field: field, Reason: "must not be empty"}
		}
	}
	return &ValidationError{Field: field, Reason: leaf.ErrorKind.LocalizedString(message.NewPrinter(language.English))}
}

// collectLeaves gathers the errors that have no causes. An anyOf is a leaf: its causes
// are the alternatives, and naming only one of them would mislead.
func collectLeaves(e *jsonschema.ValidationError, out *[]*jsonschema.ValidationError) {
	if _, ok := e.ErrorKind.(*kind.AnyOf); ok || len(e.Causes) == 0 {
		*out = append(*out, e)
		return
	}
	for _, c := range e.Causes {
		collectLeaves(c, out)
	}
}

// anyOfReason words the one anyOf the schemas use, "one of these properties is
// required", and falls back to a generic reason for anything else.
func anyOfReason(e *jsonschema.ValidationError) string {
	var names []string
	for _, c := range e.Causes {
		r, ok := c.ErrorKind.(*kind.Required)
		if !ok {
			return "matches none of the allowed forms"
		}
		names = append(names, r.Missing...)
	}
	return "needs one of " + quoteAll(names)
}

func joinPath(prefix string, tokens ...string) string {
	path := prefix
	for _, t := range tokens {
		if path != "" {
			path += "."
		}
		path += t
	}
	return path
}

func quoteAll[T any](vs []T) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = quote(v)
	}
	return strings.Join(q, ", ")
}

func quote(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// unmarshalError words an encoding/json error found after schema validation passed
// (for instance 1.5 in an int field, which the schema's "integer" also rejects, or a
// time Go cannot parse).
func unmarshalError(prefix string, err error) *ValidationError {
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return &ValidationError{Field: joinPath(prefix, te.Field), Reason: fmt.Sprintf("got %s, want %s", te.Value, te.Type)}
	}
	return &ValidationError{Field: prefix, Reason: err.Error()}
}
