package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"

	"github.com/lvsctl/lvsctl/controlplane/limits"
	"github.com/lvsctl/lvsctl/controlplane/validate"
)

// This file turns the bytes of a manifest into generic values (maps, lists, json.Number,
// strings, booleans, nil), one per document, for docReader to read. Both YAML and JSON keep
// every number as it was written (json.Number holds the text), so that docReader can refuse
// the forms that mean something else to another reader: YAML 1.1 reads `port: 0554` as octal
// 364, and 0x22a, 1e3 and +554 are numbers only to some parsers.
//
// YAML is read with go.yaml.in/yaml/v3 (the YAML organisation's maintained go-yaml v3, already
// in the module graph through sigs.k8s.io/yaml) into its node tree, which keeps each scalar's
// text, tag and line; the tree holds an alias once, so parsing costs in proportion to the
// input, and the conversion below bounds what aliases expand to.

// checkText refuses input that is not a manifest at all before any parser sees it: larger than
// limits.MaxManifestBytes, holding a NUL byte (never legitimate in YAML or JSON text) or
// bytes that are not UTF-8.
func checkText(data []byte) error {
	if len(data) > limits.MaxManifestBytes {
		return &InputError{&limits.Error{Where: "manifest", What: "bytes", Got: int64(len(data)), Max: limits.MaxManifestBytes}}
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		line, col := position(data, i)
		return &InputError{fmt.Errorf("manifest: line %d, column %d: a NUL byte (a manifest is UTF-8 text)", line, col)}
	}
	if !utf8.Valid(data) {
		i := 0
		for i < len(data) {
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			i += size
		}
		line, col := position(data, i)
		return &InputError{fmt.Errorf("manifest: line %d, column %d: byte 0x%02x is not UTF-8 (a manifest is UTF-8 text)", line, col, data[i])}
	}
	return nil
}

// InputError is a manifest refused as a whole (its size, its bytes, its number of objects).
// It matches validate.ErrInvalid, and what it wraps (limits.ErrExceeded for a limit).
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }

// Unwrap returns the reason.
func (e *InputError) Unwrap() error { return e.Err }

// Is makes every InputError match validate.ErrInvalid.
func (e *InputError) Is(target error) bool { return target == validate.ErrInvalid }

// position is the 1-based line and column (in bytes) of offset i.
func position(data []byte, i int) (line, col int) {
	before := data[:min(i, len(data))]
	line = bytes.Count(before, []byte("\n")) + 1
	return line, i - (bytes.LastIndexByte(before, '\n') + 1) + 1
}

// documents is the list of documents read so far, with the bound on their number.
type documents struct {
	docs []any
}

// add adds a document; a top-level list is a list of documents (as printed for several
// objects in JSON).
func (d *documents) add(v any) error {
	switch v := v.(type) {
	case nil:
		return nil
	case []any:
		for _, e := range v {
			if err := d.add(e); err != nil {
				return err
			}
		}
		return nil
	}
	if len(d.docs) == limits.MaxObjectsPerApply {
		return &InputError{fmt.Errorf("manifest: more than %d objects, the limit of one apply (apply it in parts): %w",
			limits.MaxObjectsPerApply, limits.ErrExceeded)}
	}
	d.docs = append(d.docs, v)
	return nil
}

// split returns the documents of the input as generic values, dropping empty ones.
func split(data []byte) ([]any, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		return splitJSON(trimmed)
	}
	var d documents
	for _, chunk := range yamlDocuments(data) {
		n := len(d.docs) + 1
		var node yaml.Node
		if err := yaml.Unmarshal(chunk.text, &node); err != nil {
			return nil, fmt.Errorf("document %d (starting at line %d): %w", n, chunk.line, err)
		}
		v, err := fromYAML(&node, chunk.first)
		if err != nil {
			return nil, fmt.Errorf("document %d (starting at line %d): %w", n, chunk.line, err)
		}
		if err := d.add(v); err != nil {
			return nil, err
		}
	}
	return d.docs, nil
}

type yamlChunk struct {
	text []byte
	// line is the document's first line after its "---"; first is the input's line of the
	// text's first line (the "---" line, whose rest starts the text).
	line, first int
}

// yamlDocuments splits a YAML stream at "---" lines, like kubectl's YAML reader.
func yamlDocuments(data []byte) []yamlChunk {
	var chunks []yamlChunk
	cur := yamlChunk{line: 1, first: 1}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), len(data)+1)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "---"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\r') {
			chunks = append(chunks, cur)
			cur = yamlChunk{line: n + 1, first: n}
			// Anything after "--- " on the same line (a comment, usually) starts the document.
			line = rest
		}
		cur.text = append(cur.text, line...)
		cur.text = append(cur.text, '\n')
	}
	return append(chunks, cur)
}

// ErrAliasBudget is returned for a document whose aliases expand past their budget
// (limits.MinAliasBudget, limits.AliasBudgetFactor): a "billion laughs".
var ErrAliasBudget = errors.New("aliases expand too far")

// yamlConverter converts one document's node tree.
type yamlConverter struct {
	// firstLine is the document's first line in the input: node lines are the chunk's.
	firstLine int
	// budget is how many more nodes alias expansion may produce, out of limit.
	budget, limit int
}

// fromYAML converts a parsed document to generic values (nil for an empty document).
func fromYAML(doc *yaml.Node, firstLine int) (any, error) {
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil
	}
	written := countNodes(doc)
	limit := max(limits.MinAliasBudget, limits.AliasBudgetFactor*written)
	cv := &yamlConverter{firstLine: firstLine, budget: limit, limit: limit}
	return cv.value(doc.Content[0], 0, false)
}

// countNodes counts the nodes as written: an alias is one node, its anchor's are not repeated.
func countNodes(n *yaml.Node) int {
	c := 1
	for _, k := range n.Content {
		c += countNodes(k)
	}
	return c
}

func (cv *yamlConverter) errorf(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("line %d: "+format, append([]any{cv.firstLine + n.Line - 1}, args...)...)
}

// value converts node n at nesting depth; viaAlias says whether n is being produced by an
// alias's expansion, which costs budget.
func (cv *yamlConverter) value(n *yaml.Node, depth int, viaAlias bool) (any, error) {
	if viaAlias {
		cv.budget--
		if cv.budget < 0 {
			return nil, cv.errorf(n, "%w: past %d nodes, the limit for this document (%d times its own nodes, at least %d)",
				ErrAliasBudget, cv.limit, limits.AliasBudgetFactor, limits.MinAliasBudget)
		}
	}
	if depth > limits.MaxManifestDepth {
		return nil, cv.errorf(n, "nested more than %d levels deep", limits.MaxManifestDepth)
	}
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, cv.errorf(n, "alias %s names no anchor", limits.Quote(n.Value))
		}
		return cv.value(n.Alias, depth, true)
	case yaml.MappingNode:
		return cv.mapping(n, depth, viaAlias)
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		for _, e := range n.Content {
			v, err := cv.value(e, depth+1, viaAlias)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		return l, nil
	case yaml.ScalarNode:
		return cv.scalar(n)
	}
	return nil, cv.errorf(n, "unexpected YAML node")
}

func (cv *yamlConverter) scalar(n *yaml.Node) (any, error) {
	switch tag := n.ShortTag(); tag {
	case "!!str", "!!timestamp":
		// A date is text to the schema, as written.
		return n.Value, nil
	case "!!null":
		return nil, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, cv.errorf(n, "%s is not a boolean", limits.Quote(n.Value))
		}
		return b, nil
	case "!!int", "!!float":
		// The text as written: docReader decides which forms it takes.
		return json.Number(n.Value), nil
	default:
		return nil, cv.errorf(n, "the tag %s is not taken (a manifest holds text, numbers, booleans, lists and mappings)", limits.Quote(tag))
	}
}

// mapping converts a mapping. A key may appear once. Merge keys (<<: *defaults) copy the keys
// of the merged mappings that the mapping does not set itself, the first merged mapping
// first, as YAML 1.1's merge type and sigs.k8s.io/yaml do.
func (cv *yamlConverter) mapping(n *yaml.Node, depth int, viaAlias bool) (any, error) {
	m := make(map[string]any, len(n.Content)/2)
	lines := make(map[string]int, len(n.Content)/2)
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		for k.Kind == yaml.AliasNode && k.Alias != nil {
			k = k.Alias
		}
		if k.Kind != yaml.ScalarNode {
			return nil, cv.errorf(k, "a mapping key must be text, not a list or a mapping")
		}
		if k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if first, dup := lines[k.Value]; dup {
			return nil, cv.errorf(k, "key %s is defined twice (first on line %d)", limits.Quote(k.Value), cv.firstLine+first-1)
		}
		lines[k.Value] = k.Line
		val, err := cv.value(v, depth+1, viaAlias)
		if err != nil {
			return nil, err
		}
		m[k.Value] = val
	}
	for _, mg := range merges {
		sources := []*yaml.Node{mg}
		if target := deref(mg); target.Kind == yaml.SequenceNode {
			sources = target.Content
		}
		for _, src := range sources {
			v, err := cv.value(src, depth, viaAlias || src.Kind == yaml.AliasNode)
			if err != nil {
				return nil, err
			}
			sm, ok := v.(map[string]any)
			if !ok {
				return nil, cv.errorf(src, "a merge key (<<) takes a mapping or a list of mappings")
			}
			for key, val := range sm {
				if _, set := m[key]; !set {
					m[key] = val
				}
			}
		}
	}
	return m, nil
}

func deref(n *yaml.Node) *yaml.Node {
	for depth := 0; n.Kind == yaml.AliasNode && n.Alias != nil && depth <= limits.MaxManifestDepth; depth++ {
		n = n.Alias
	}
	return n
}

// splitJSON reads a JSON object, an array of objects or a stream of them, refusing a key
// repeated in one object (encoding/json would keep the last one silently).
func splitJSON(data []byte) ([]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var d documents
	for {
		n := len(d.docs) + 1
		v, err := jsonValue(dec, 0)
		if errors.Is(err, io.EOF) {
			return d.docs, nil
		}
		if err != nil {
			line, col := position(data, int(dec.InputOffset()))
			return nil, fmt.Errorf("document %d: line %d, column %d: %w", n, line, col, err)
		}
		if err := d.add(v); err != nil {
			return nil, err
		}
	}
}

// jsonValue reads one JSON value token by token, at nesting depth. The end of the input is
// io.EOF before a top-level value, io.ErrUnexpectedEOF inside one.
func jsonValue(dec *json.Decoder, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		if depth > 0 && errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, json.Number, bool or nil
	}
	if depth >= limits.MaxManifestDepth {
		return nil, fmt.Errorf("nested more than %d levels deep", limits.MaxManifestDepth)
	}
	switch delim {
	case '{':
		m := map[string]any{}
		for dec.More() {
			kt, err := inner(dec)
			if err != nil {
				return nil, err
			}
			key, _ := kt.(string) // the decoder returns only strings as keys
			if _, dup := m[key]; dup {
				return nil, fmt.Errorf("key %s is defined twice", limits.Quote(key))
			}
			v, err := jsonValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			m[key] = v
		}
		if _, err := inner(dec); err != nil { // the closing '}'
			return nil, err
		}
		return m, nil
	case '[':
		l := []any{}
		for dec.More() {
			v, err := jsonValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		if _, err := inner(dec); err != nil { // the closing ']'
			return nil, err
		}
		return l, nil
	}
	return nil, fmt.Errorf("unexpected %v", delim)
}

// inner reads a token inside a value, where the input may not end.
func inner(dec *json.Decoder) (json.Token, error) {
	tok, err := dec.Token()
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return tok, err
}
