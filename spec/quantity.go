package spec

// Quantities use Kubernetes notation ("250m", "0.5", "64Mi", "1G"), parsed
// here by hand: k8s.io/apimachinery's resource.Quantity would pull in a large
// dependency tree for two small functions, and its rounding (0.1m becomes 1m)
// is not what a spec wants: Gantry rejects values it cannot represent exactly.

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	yaml "go.yaml.in/yaml/v3"
)

// maxQuantityLen bounds quantity text; the longest sensible one is ~25 bytes.
const maxQuantityLen = 64

// valueError is a bad scalar value: a quantity, a signal, a duration. It is in
// the errdefs.ErrInvalid category and keeps message and hint apart so the
// parser can put them into a FieldError.
type valueError struct {
	Value, Msg, Hint string
}

func (e *valueError) Error() string {
	s := fmt.Sprintf("%q: %s", e.Value, e.Msg)
	if e.Hint != "" {
		s += " (hint: " + e.Hint + ")"
	}
	return s
}

func (e *valueError) Is(target error) bool { return target == errdefs.ErrInvalid }

const (
	cpuHint   = `write CPU as cores ("0.5", "2") or millicores ("250m")`
	bytesHint = `write a size as bytes ("1048576") or with a suffix: Ki Mi Gi Ti Pi Ei (powers of 1024) or k M G T P E (powers of 1000), e.g. "64Mi"`
)

// quantityKind describes one kind of quantity for parseQuantity.
type quantityKind struct {
	what     string              // "CPU", "size"
	hint     string              // how to write one
	fraction string              // message for values finer than the unit
	units    map[string]*big.Int // suffix -> multiplier
}

var (
	cpuKind = quantityKind{
		what:     "CPU",
		hint:     cpuHint,
		fraction: "CPU is finer than one millicore (0.001 cores)",
		units: map[string]*big.Int{
			"":  big.NewInt(1000), // cores
			"m": big.NewInt(1),    // millicores
		},
	}
	bytesKind = quantityKind{
		what:     "size",
		hint:     bytesHint,
		fraction: "size is not a whole number of bytes",
		units:    bytesUnits(),
	}
)

// bytesUnits maps size suffixes to multipliers: Ki..Ei are powers of 1024,
// k/K..E powers of 1000.
func bytesUnits() map[string]*big.Int {
	u := map[string]*big.Int{"": big.NewInt(1)}
	bin := new(big.Int).SetInt64(1)
	dec := new(big.Int).SetInt64(1)
	for _, p := range []string{"K", "M", "G", "T", "P", "E"} {
		bin = new(big.Int).Mul(bin, big.NewInt(1024))
		dec = new(big.Int).Mul(dec, big.NewInt(1000))
		u[p+"i"] = bin
		u[p] = dec
	}
	u["k"] = u["K"]
	return u
}

// ParseCPU parses a CPU quantity in Kubernetes notation: cores ("1", "0.5",
// "2.25", "1e1") or millicores ("250m"). Values finer than one millicore,
// negative values and junk are errors in the errdefs.ErrInvalid category.
func ParseCPU(s string) (MilliCPU, error) {
	v, err := parseQuantity(s, cpuKind, false)
	return MilliCPU(v), err
}

// ParseBytes parses a size: a plain integer ("1048576"), a number with a
// binary suffix Ki Mi Gi Ti Pi Ei or a decimal suffix k K M G T P E ("64Mi",
// "1.5Gi", "1G"), or an exponent form ("1e9"). Fractions of a byte, negative
// values, overflow and junk are errors in the errdefs.ErrInvalid category.
func ParseBytes(s string) (Bytes, error) {
	v, err := parseQuantity(s, bytesKind, false)
	return Bytes(v), err
}

// parseQuantity parses "<digits>[.<digits>]<suffix>" exactly, where suffix is
// a key of k.units or a decimal exponent ("e3", "E-2"). The value times the
// unit must be a whole number that fits an int64. Negative values are accepted
// only when allowNeg is set (for JSON decoding of stored values).
func parseQuantity(in string, k quantityKind, allowNeg bool) (int64, error) {
	what, units := k.what, k.units
	fail := func(format string, args ...any) (int64, error) {
		return 0, &valueError{Value: in, Msg: fmt.Sprintf(format, args...), Hint: k.hint}
	}
	s := strings.TrimSpace(in)
	if s == "" {
		return fail("empty %s", what)
	}
	if len(s) > maxQuantityLen {
		return fail("%s is too long", what)
	}
	neg := false
	if s[0] == '-' {
		if !allowNeg {
			return fail("%s must not be negative", what)
		}
		neg, s = true, s[1:]
	}
	// Mantissa: digits with at most one '.', at least one digit.
	i, digits, scale, dot := 0, 0, 0, false
	var mant strings.Builder
mantissa:
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			mant.WriteByte(c)
			digits++
			if dot {
				scale++
			}
		case c == '.' && !dot:
			dot = true
		default:
			break mantissa
		}
	}
	if digits == 0 {
		return fail("not a %s: want a number first", what)
	}
	suffix := s[i:]
	unit, ok := units[suffix]
	exp := 0
	if !ok {
		e, ok := parseExponent(suffix)
		if !ok {
			return fail("unknown suffix %q", suffix)
		}
		unit, exp = units[""], e
	}
	v, _ := new(big.Int).SetString(mant.String(), 10)
	v.Mul(v, unit)
	if exp >= 0 {
		v.Mul(v, pow10(exp))
	} else {
		scale -= exp
	}
	if scale > 0 {
		q, r := new(big.Int).QuoRem(v, pow10(scale), new(big.Int))
		if r.Sign() != 0 {
			return fail("%s", k.fraction)
		}
		v = q
	}
	if neg {
		v.Neg(v)
	}
	if !v.IsInt64() {
		return fail("%s is too large", what)
	}
	return v.Int64(), nil
}

// parseExponent parses a decimal exponent "e3", "E+3", "e-2" (|n| <= 100).
func parseExponent(s string) (int, bool) {
	if len(s) < 2 || (s[0] != 'e' && s[0] != 'E') {
		return 0, false
	}
	body := s[1:]
	digits := strings.TrimPrefix(strings.TrimPrefix(body, "+"), "-")
	if digits == "" || len(digits) > 3 || len(body)-len(digits) > 1 {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	e, err := strconv.Atoi(body)
	if err != nil || e > 100 || e < -100 {
		return 0, false
	}
	return e, true
}

func pow10(n int) *big.Int {
	return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
}

// String renders whole cores as "2" and everything else as millicores
// ("250m", "2250m"); ParseCPU reads both back exactly.
func (c MilliCPU) String() string {
	if c%1000 == 0 {
		return strconv.FormatInt(int64(c/1000), 10)
	}
	return strconv.FormatInt(int64(c), 10) + "m"
}

// MarshalJSON writes the String form as a JSON string ("250m", "1").
func (c MilliCPU) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// UnmarshalJSON reads a string ("250m", "0.5") or a number of cores (0.5).
// Negative values are accepted so that any stored value reads back exactly;
// Validate rejects them.
func (c *MilliCPU) UnmarshalJSON(data []byte) error {
	text, ok, err := jsonScalarText(data)
	if err != nil || !ok {
		return err
	}
	v, err := parseQuantity(text, cpuKind, true)
	if err != nil {
		return err
	}
	*c = MilliCPU(v)
	return nil
}

// MarshalYAML writes the String form.
func (c MilliCPU) MarshalYAML() (any, error) { return c.String(), nil }

// UnmarshalYAML reads a number of cores or a string, as Parse does.
func (c *MilliCPU) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &valueError{Value: n.Value, Msg: "CPU must be a number or a string", Hint: cpuHint}
	}
	v, err := ParseCPU(n.Value)
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// binarySuffixes are tried from the largest down for Bytes.String.
var binarySuffixes = []string{"Ei", "Pi", "Ti", "Gi", "Mi", "Ki"}

// String renders the shortest exact form with a binary suffix ("64Mi",
// "1536Ki"), or the plain integer when no suffix divides it ("1000").
func (b Bytes) String() string {
	s, _ := b.format()
	return s
}

// format returns String and whether it carries a suffix.
func (b Bytes) format() (string, bool) {
	if b == 0 {
		return "0", false
	}
	sign := ""
	mag := uint64(b)
	if b < 0 {
		sign, mag = "-", uint64(-(b+1))+1 // no overflow for math.MinInt64
	}
	for i, suf := range binarySuffixes {
		unit := uint64(1) << (10 * (len(binarySuffixes) - i))
		if mag%unit == 0 {
			return sign + strconv.FormatUint(mag/unit, 10) + suf, true
		}
	}
	return strconv.FormatInt(int64(b), 10), false
}

// MarshalJSON writes a suffixed size as a JSON string ("64Mi") and any other
// as a JSON number (1000).
func (b Bytes) MarshalJSON() ([]byte, error) {
	s, suffixed := b.format()
	if suffixed {
		return json.Marshal(s)
	}
	return []byte(s), nil
}

// UnmarshalJSON reads a number or a string ("64Mi"). Negative values are
// accepted so that any stored value reads back exactly; Validate rejects them.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	text, ok, err := jsonScalarText(data)
	if err != nil || !ok {
		return err
	}
	v, err := parseQuantity(text, bytesKind, true)
	if err != nil {
		return err
	}
	*b = Bytes(v)
	return nil
}

// MarshalYAML writes a suffixed size as a string and any other as a number.
func (b Bytes) MarshalYAML() (any, error) {
	s, suffixed := b.format()
	if suffixed {
		return s, nil
	}
	return int64(b), nil
}

// UnmarshalYAML reads a number or a string, as Parse does.
func (b *Bytes) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &valueError{Value: n.Value, Msg: "size must be a number or a string", Hint: bytesHint}
	}
	v, err := ParseBytes(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// String is Go duration text ("10s", "1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes Go duration text as a JSON string ("10s").
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads Go duration text ("1m30s") or an integer number of
// nanoseconds (what encoding/json writes for a plain time.Duration).
func (d *Duration) UnmarshalJSON(data []byte) error {
	s := strings.TrimSpace(string(data))
	if s == "null" {
		return nil
	}
	if strings.HasPrefix(s, `"`) {
		var text string
		if err := json.Unmarshal(data, &text); err != nil {
			return err
		}
		v, err := parseDuration(text)
		if err != nil {
			return err
		}
		*d = v
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return &valueError{Value: s, Msg: "duration must be a string like \"10s\" or an integer number of nanoseconds"}
	}
	*d = Duration(n)
	return nil
}

// MarshalYAML writes Go duration text.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads Go duration text, as Parse does.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &valueError{Value: n.Value, Msg: "duration must be a string like \"10s\""}
	}
	v, err := durationFromScalar(n.Value, n.ShortTag())
	if err != nil {
		return err
	}
	*d = v
	return nil
}

const durationHint = `write a number with a unit: "500ms", "10s", "1m30s", "1h"`

// parseDuration is time.ParseDuration with a hint on failure.
func parseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, &valueError{Value: s, Msg: "not a duration", Hint: durationHint}
	}
	return Duration(v), nil
}

// durationFromScalar reads a YAML scalar as a duration. A bare number is
// refused (is "10" seconds or nanoseconds?), except 0 which is unambiguous.
func durationFromScalar(text, tag string) (Duration, error) {
	switch tag {
	case "!!int", "!!float":
		if f, err := strconv.ParseFloat(text, 64); err == nil && f == 0 {
			return 0, nil
		}
		return 0, &valueError{Value: text, Msg: "a duration needs a unit", Hint: fmt.Sprintf("write %q or %q", text+"s", text+"ms")}
	case "!!str":
		return parseDuration(text)
	}
	return 0, &valueError{Value: text, Msg: "not a duration", Hint: durationHint}
}

// jsonScalarText returns the text of a JSON string or number; ok is false
// for null (which leaves the target unchanged, as encoding/json does).
func jsonScalarText(data []byte) (text string, ok bool, err error) {
	s := strings.TrimSpace(string(data))
	switch {
	case s == "null":
		return "", false, nil
	case strings.HasPrefix(s, `"`):
		if err := json.Unmarshal(data, &text); err != nil {
			return "", false, err
		}
		return text, true, nil
	case s != "" && (s[0] == '-' || (s[0] >= '0' && s[0] <= '9')):
		return s, true, nil
	}
	return "", false, &valueError{Value: s, Msg: "want a number or a string"}
}
