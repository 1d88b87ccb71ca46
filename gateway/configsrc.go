package gateway

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"
)

// ConfigError is one problem in a config: the field path, where the value
// came from (a line of the file, or an environment variable), and what is
// wrong with it.
type ConfigError struct {
	File string // the config file
	Line int    // line of the field (or of its nearest parent) in File; 0 when unknown
	Env  string // the environment variable that set the field, if one did
	Path string // field path, e.g. "policies.per-ip.window"; empty for the whole file
	Msg  string
}

// Error formats e as "FILE:LINE: PATH: MSG", or "ENV: PATH: MSG" when an
// environment variable set the field.
func (e *ConfigError) Error() string {
	var b strings.Builder
	switch {
	case e.Env != "":
		b.WriteString("environment variable " + e.Env + ": ")
	case e.File != "" && e.Line > 0:
		b.WriteString(e.File + ":" + strconv.Itoa(e.Line) + ": ")
	case e.File != "":
		b.WriteString(e.File + ": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors collects validation errors; each names its field path.
type Errors []error

func (e Errors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "\n")
}

func (e Errors) Unwrap() []error { return e }

func fieldErr(path, format string, args ...any) error {
	return &ConfigError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// asConfigError turns err into a *ConfigError, taking its path from a
// "path: message" text when it is not one already.
func asConfigError(err error) *ConfigError {
	var ce *ConfigError
	if errors.As(err, &ce) {
		c := *ce
		return &c
	}
	msg := err.Error()
	if path, rest, ok := strings.Cut(msg, ": "); ok && fieldPathRE.MatchString(path) {
		return &ConfigError{Path: path, Msg: rest}
	}
	return &ConfigError{Msg: msg}
}

var fieldPathRE = regexp.MustCompile(`^[A-Za-z0-9_.\-\[\] ]+$`)

// parentPaths yields path, then each shorter prefix of it: a.b[2].c,
// a.b[2], a.b, a.
func parentPaths(path string) []string {
	var out []string
	for path != "" {
		out = append(out, path)
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return out
}

// source tells where each field of a loaded config came from.
type source struct {
	file  string
	lines map[string]int    // field path -> line in file
	env   map[string]string // field path -> environment variable
}

// locate fills in where e's field came from.
func (s *source) locate(e *ConfigError) {
	e.File = s.file
	for _, p := range parentPaths(e.Path) {
		if v, ok := s.env[p]; ok {
			e.Env = v
			return
		}
	}
	for _, p := range parentPaths(e.Path) {
		if l, ok := s.lines[p]; ok {
			e.Line = l
			return
		}
	}
}

// yamlLines maps every field path of a YAML document to its line.
func yamlLines(data []byte) map[string]int {
	lines := map[string]int{}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return lines
	}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				if _, seen := lines[p]; !seen {
					lines[p] = k.Line
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, v := range n.Content {
				p := path + "[" + strconv.Itoa(i) + "]"
				lines[p] = v.Line
				walk(v, p)
			}
		}
	}
	walk(doc.Content[0], "")
	return lines
}

// yamlErrorLine finds the line number in a YAML parser error.
var yamlErrorLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// yamlError turns a YAML syntax error into a ConfigError with its line.
// koanf parses with yaml/v3, whose parser errors can name the line of the
// enclosing block rather than the offending one; yaml/v4 names the right
// line, so the document is parsed again with it for the message.
func yamlError(file string, data []byte, err error) error {
	var v any
	if err4 := yaml.Unmarshal(data, &v); err4 != nil {
		err = err4
	}
	m := yamlErrorLine.FindStringSubmatch(err.Error())
	if m == nil {
		return &ConfigError{File: file, Msg: err.Error()}
	}
	line, _ := strconv.Atoi(m[1])
	return &ConfigError{File: file, Line: line, Msg: "invalid YAML: " + m[2]}
}

var durationType = reflect.TypeFor[time.Duration]()

// durationHook decodes durations strictly: a string with a unit ("30s",
// "1m30s", "1d", "1d12h"); a bare number is an error that suggests the
// fix, since a unitless 30 would silently mean 30ns.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType {
		return data, nil
	}
	switch v := data.(type) {
	case string:
		return ParseDuration(v)
	case time.Duration:
		return v, nil
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64:
		if reflect.ValueOf(v).IsZero() {
			return time.Duration(0), nil
		}
		return nil, fmt.Errorf("%v has no unit: use %vs (or ms, m, h, d)", v, v)
	}
	return nil, fmt.Errorf("want a duration such as 30s, got %T", data)
}

// ParseDuration parses a Go duration ("100ms", "1m30s") that may begin with
// a number of days ("1d", "7d", "1d12h"). A unit is required: only "0" may
// go without one.
func ParseDuration(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	if in == "0" {
		return 0, nil
	}
	if _, err := strconv.ParseFloat(in, 64); err == nil {
		return 0, fmt.Errorf("%q has no unit: use %ss (or ms, m, h, d)", s, in)
	}
	bad := func() (time.Duration, error) {
		return 0, fmt.Errorf("%q is not a duration: use a number with a unit, such as 30s, 5m, 1h or 1d", s)
	}
	neg := strings.HasPrefix(in, "-")
	rest := strings.TrimPrefix(strings.TrimPrefix(in, "-"), "+")
	var days float64
	if before, after, ok := strings.Cut(rest, "d"); ok {
		n, err := strconv.ParseFloat(before, 64)
		if err != nil || n < 0 || strings.ContainsAny(before, "eE") {
			return bad()
		}
		days, rest = n, after
	}
	var d time.Duration
	if rest != "" {
		if rest[0] < '0' || rest[0] > '9' {
			if rest[0] != '.' {
				return bad()
			}
		}
		var err error
		if d, err = time.ParseDuration(rest); err != nil {
			return bad()
		}
	}
	total := days*float64(24*time.Hour) + float64(d)
	if total >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is too long (at most about 106751d)", s)
	}
	out := time.Duration(total)
	if neg {
		out = -out
	}
	return out, nil
}

// bytesProvider is a koanf.Provider of bytes already read, so that the file
// is read once for its values and its line numbers.
type bytesProvider []byte

func (b bytesProvider) ReadBytes() ([]byte, error) { return b, nil }

func (b bytesProvider) Read() (map[string]any, error) {
	return nil, errors.New("bytesProvider needs a parser")
}
