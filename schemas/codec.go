package schemas

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"reflect"
	"strings"
	"time"

	"github.com/bytedance/sonic"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaFiles holds the public contract: the envelope schema and one schema per type
// and version, named after the type.
//
//go:embed json/*.json
var schemaFiles embed.FS

// envelopeSchema is the file name of the envelope's schema.
const envelopeSchema = "envelope.v1.json"

// New builds the envelope of d: it normalises d (UTC times, m_ mids, the direction its
// type implies), derives the deterministic id, and marshals the data. source is a
// URI-reference naming the producer, e.g. SourceWebhook; receivedAt is when the fact
// reached it. Times in the envelope are truncated to milliseconds, as they are written.
// New does not validate against the schemas; it refuses only what could not be routed:
// no source, no page id or no event time, as a *ValidationError.
func New(source string, receivedAt time.Time, d Data) (Envelope, error) {
	if d == nil {
		return Envelope{}, &ValidationError{Field: "data", Reason: "no data"}
	}
	d = d.normalize()
	typ := d.EventType()
	switch {
	case source == "":
		return Envelope{}, fmt.Errorf("new %s event: %w", typ, &ValidationError{Field: "source", Reason: "must not be empty"})
	case d.EventPageID() == "":
		return Envelope{}, fmt.Errorf("new %s event: %w", typ, &ValidationError{Field: "data.page_id", Reason: "must not be empty"})
	case d.EventTime().IsZero():
		return Envelope{}, fmt.Errorf("new %s event page %s: %w", typ, d.EventPageID(), &ValidationError{Field: "time", Reason: "event time is not set"})
	}
	data, err := json.Marshal(d)
	if err != nil {
		return Envelope{}, fmt.Errorf("new %s event page %s: marshal data: %w", typ, d.EventPageID(), err)
	}
	return Envelope{
		SpecVersion:     SpecVersion,
		ID:              ID(d),
		Source:          source,
		Type:            typ,
		Time:            d.EventTime().UTC().Truncate(time.Millisecond),
		Subject:         d.EventSubject(),
		DataContentType: DataContentType,
		PageID:          d.EventPageID(),
		ReceivedAt:      receivedAt.UTC().Truncate(time.Millisecond),
		Data:            data,
	}, nil
}

// Encode is New followed by the envelope's JSON: the record value to produce, with
// env.PageID as its key. It is the ingest hot path: one json.Marshal of the data, the
// envelope appended by hand, no schema validation.
func Encode(source string, receivedAt time.Time, d Data) ([]byte, Envelope, error) {
	env, err := New(source, receivedAt, d)
	if err != nil {
		return nil, Envelope{}, err
	}
	return env.appendJSON(make([]byte, 0, envelopeSize+len(env.Data))), env, nil
}

// Codec validates and decodes records. It is safe for concurrent use; build one per
// process with NewCodec.
type Codec struct {
	envelope *jsonschema.Schema
	// data maps every type that has a schema file, current or old, to its schema.
	data map[string]*jsonschema.Schema
	// upcasters maps an old type to the function that lifts its data one version up.
	upcasters map[string]upcaster
}

// upcaster lifts the data of an old event version to the next one. The old type keeps
// its schema file, so a record is validated as what it claims to be, then upcast, then
// validated again as the new type. Upcasting keeps the id: it is the same fact.
type upcaster struct {
	to string
	up func(data json.RawMessage) (json.RawMessage, error)
}

// NewCodec compiles the embedded schemas (draft 2020-12, format assertions on) once.
func NewCodec() (*Codec, error) {
	pretouch()
	compiled, err := compileSchemas(schemaFiles)
	if err != nil {
		return nil, err
	}
	c := &Codec{
		envelope: compiled[envelopeSchema],
		data:     make(map[string]*jsonschema.Schema, len(compiled)),
		// Only v1 exists. When a type gets a v2: keep json/<type>.v1.json, add the v2
		// file and constant, point Decode's switch at the v2 struct, and register here
		// e.g. "convsync.messenger.message.v1": {to: TypeMessageV2, up: messageV1toV2}.
		// Chains (v1 -> v2 -> v3) are followed until a current type is reached.
		upcasters: map[string]upcaster{},
	}
	if c.envelope == nil {
		return nil, fmt.Errorf("compile schemas: %s is missing", envelopeSchema)
	}
	for name, sch := range compiled {
		if name != envelopeSchema {
			c.data[strings.TrimSuffix(name, ".json")] = sch
		}
	}
	for _, typ := range Types() {
		if c.data[typ] == nil {
			return nil, fmt.Errorf("compile schemas: no schema for type %s", typ)
		}
	}
	return c, nil
}

// compileSchemas compiles every json/*.json file of fsys, keyed by file name. Each file
// is added under its own $id, so the files may refer to each other.
func compileSchemas(fsys fs.FS) (map[string]*jsonschema.Schema, error) {
	names, err := fs.Glob(fsys, "json/*.json")
	if err != nil {
		return nil, fmt.Errorf("compile schemas: %w", err)
	}
	comp := jsonschema.NewCompiler()
	comp.DefaultDraft(jsonschema.Draft2020)
	comp.AssertFormat()
	ids := make(map[string]string, len(names))
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("compile schemas: %w", err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("compile schema %s: %w", name, err)
		}
		obj, _ := doc.(map[string]any)
		id, _ := obj["$id"].(string)
		if id == "" {
			return nil, fmt.Errorf("compile schema %s: no $id", name)
		}
		if err := comp.AddResource(id, doc); err != nil {
			return nil, fmt.Errorf("compile schema %s: %w", name, err)
		}
		ids[path.Base(name)] = id
	}
	out := make(map[string]*jsonschema.Schema, len(ids))
	for name, id := range ids {
		sch, err := comp.Compile(id)
		if err != nil {
			return nil, fmt.Errorf("compile schema %s: %w", name, err)
		}
		out[name] = sch
	}
	return out, nil
}

// Decode validates one record and returns its envelope and typed data (Message, Echo,
// Delivery, …, never a pointer). The envelope is checked against its schema, data
// against the schema of the event type, and pageid against data.page_id. Properties
// the schemas do not know are allowed and dropped. Every error is a *ValidationError.
func (c *Codec) Decode(b []byte) (Envelope, Data, error) {
	var doc any
	if err := decodeJSON.Unmarshal(b, &doc); err != nil {
		return Envelope{}, nil, &ValidationError{Reason: "not JSON: " + err.Error()}
	}
	if err := c.envelope.Validate(doc); err != nil {
		return Envelope{}, nil, schemaError("", err)
	}
	obj := doc.(map[string]any) // the envelope schema says object
	typ := obj["type"].(string) // and type a string
	sch, ok := c.data[typ]
	if !ok {
		return Envelope{}, nil, unknownType(typ)
	}
	if err := sch.Validate(obj["data"]); err != nil {
		return Envelope{}, nil, schemaError("data", err)
	}
	var env Envelope
	if err := decodeJSON.Unmarshal(b, &env); err != nil {
		return Envelope{}, nil, unmarshalError("", err)
	}
	if err := c.upcast(&env); err != nil {
		return Envelope{}, nil, err
	}
	d, err := decodeData(env.Type, env.Data)
	if err != nil {
		return Envelope{}, nil, err
	}
	if d.EventPageID() != env.PageID {
		return Envelope{}, nil, &ValidationError{Field: "data.page_id", Reason: fmt.Sprintf("%q does not match pageid %q", d.EventPageID(), env.PageID)}
	}
	if err := checkTimes(env, d); err != nil {
		return Envelope{}, nil, err
	}
	return env, d, nil
}

var timeType = reflect.TypeFor[time.Time]()

// checkTimes refuses times that pass the date-time format but cannot be written again,
// so the processor would fold the event and then fail to encode its delta (or New its
// re-encoding): a time whose year in UTC is outside [0, 9999], as JSON writes four digits
// ("0000-01-01T00:00:00+01:00" is in year -1 in UTC), and an event time of
// 0001-01-01T00:00:00Z, Go's zero time, which New refuses as not set. Found by
// FuzzCodecDecode.
func checkTimes(env Envelope, d Data) *ValidationError {
	if !writable(env.Time) {
		return &ValidationError{Field: "time", Reason: "year in UTC outside 0 to 9999"}
	}
	if !writable(env.ReceivedAt) {
		return &ValidationError{Field: "receivedat", Reason: "year in UTC outside 0 to 9999"}
	}
	v := reflect.ValueOf(d)
	for i := range v.NumField() {
		if v.Field(i).Type() != timeType {
			continue
		}
		t := v.Field(i).Interface().(time.Time)
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		switch {
		case !writable(t):
			return &ValidationError{Field: "data." + name, Reason: "year in UTC outside 0 to 9999"}
		case t.IsZero() && t.Equal(d.EventTime()):
			return &ValidationError{Field: "data." + name, Reason: "0001-01-01T00:00:00Z is Go's zero time: the event time is not set"}
		}
	}
	return nil
}

// writable reports whether t's JSON, in UTC as New writes it, has a four-digit year.
func writable(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 0 && y <= 9999
}

// Validate checks one record as Decode does, without keeping the result.
func (c *Codec) Validate(b []byte) error {
	_, _, err := c.Decode(b)
	return err
}

// upcast lifts env to the current version of its type, validating each step's output.
func (c *Codec) upcast(env *Envelope) error {
	for seen := 0; ; seen++ {
		u, ok := c.upcasters[env.Type]
		if !ok {
			return nil
		}
		if seen > len(c.upcasters) {
			return &ValidationError{Field: "type", Reason: fmt.Sprintf("upcasters of %q form a cycle", env.Type)}
		}
		data, err := u.up(env.Data)
		if err != nil {
			return &ValidationError{Field: "data", Reason: fmt.Sprintf("upcast %s to %s: %v", env.Type, u.to, err)}
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			return &ValidationError{Field: "data", Reason: fmt.Sprintf("upcast %s to %s: not JSON: %v", env.Type, u.to, err)}
		}
		sch, ok := c.data[u.to]
		if !ok {
			return unknownType(u.to)
		}
		if err := sch.Validate(doc); err != nil {
			return schemaError("data", err)
		}
		env.Type, env.Data = u.to, data
	}
}

// decodeData unmarshals validated data into the struct of its type.
func decodeData(typ string, raw json.RawMessage) (Data, error) {
	switch typ {
	case TypeMessage:
		return unmarshalData[Message](raw)
	case TypeEcho:
		return unmarshalData[Echo](raw)
	case TypeDelivery:
		return unmarshalData[Delivery](raw)
	case TypeRead:
		return unmarshalData[Read](raw)
	case TypeReaction:
		return unmarshalData[Reaction](raw)
	case TypeEdit:
		return unmarshalData[Edit](raw)
	case TypePostback:
		return unmarshalData[Postback](raw)
	case TypeReferral:
		return unmarshalData[Referral](raw)
	case TypeOptin:
		return unmarshalData[Optin](raw)
	case TypeConversationChanged:
		return unmarshalData[ConversationChanged](raw)
	case TypeUnknown:
		return unmarshalData[Unknown](raw)
	case TypeConversationObserved:
		return unmarshalData[ConversationObserved](raw)
	case TypeMessageObserved:
		return unmarshalData[MessageObserved](raw)
	case TypePageSynced:
		return unmarshalData[PageSynced](raw)
	}
	// A schema file without a struct and without an upcaster: a bug of this package.
	return nil, unknownType(typ)
}

func unmarshalData[T Data](raw json.RawMessage) (Data, error) {
	var d T
	if err := decodeJSON.Unmarshal(raw, &d); err != nil {
		return nil, unmarshalError("data", err)
	}
	return d, nil
}

// unknownType tells a type convsync has never heard of from a version of a known type
// it does not have (a producer newer than this binary).
func unknownType(typ string) *ValidationError {
	if base, version, ok := splitVersion(typ); ok {
		for _, known := range Types() {
			if kb, _, _ := splitVersion(known); kb == base {
				return &ValidationError{Field: "type", Reason: fmt.Sprintf("unsupported version %s of event type %q", version, base)}
			}
		}
	}
	return &ValidationError{Field: "type", Reason: fmt.Sprintf("unknown event type %q", typ)}
}

// splitVersion splits "a.b.v12" into "a.b" and "v12".
func splitVersion(typ string) (base, version string, ok bool) {
	i := strings.LastIndexByte(typ, '.')
	if i <= 0 || len(typ)-i < 3 || typ[i+1] != 'v' {
		return "", "", false
	}
	for _, c := range typ[i+2:] {
		if c < '0' || c > '9' {
			return "", "", false
		}
	}
	return typ[:i], typ[i+1:], true
}

// decodeJSON is the decoder of the processor's hot path: bytedance/sonic, whose decoding
// of these documents into a generic value is about 2.7 times as fast as encoding/json's
// (decode with validation: 37.0 to 22.0 µs, BENCH.md), set to encoding/json's behaviour:
// json.Number for numbers (what the JSON Schema validator wants), control characters
// refused and invalid UTF-8 replaced by U+FFFD. One difference, on purpose: keys match
// their fields exactly, as the schemas validated them, so an unvalidated "TEXT" beside
// "text" cannot replace it (encoding/json matches keys without regard to case).
var decodeJSON = sonic.Config{UseNumber: true, ValidateString: true, CopyString: true, CaseSensitive: true}.Froze()

// JSON is encoding/json's behaviour (sonic.ConfigStd) at sonic's speed, for the other hot
// paths: the processor's deltas out and the projector's deltas in.
var JSON = sonic.ConfigStd

// pretouch compiles sonic's decoders of every type the codec decodes now, rather than on
// the first event of each type (milliseconds each: a spike in the freshness of the first
// events after a start). sonic keeps them once compiled, so a second codec costs little.
func pretouch() {
	for _, v := range []any{Envelope{}, Message{}, Echo{}, Delivery{}, Read{}, Reaction{}, Edit{}, Postback{},
		Referral{}, Optin{}, ConversationChanged{}, Unknown{}, ConversationObserved{}, MessageObserved{}, PageSynced{}} {
		Pretouch(v)
	}
}

// Pretouch compiles sonic's encoder and decoder of v's type now (see JSON).
func Pretouch(v any) { _ = sonic.Pretouch(reflect.TypeOf(v)) }
