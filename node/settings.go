package node

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Setting is one setting of Config: its TOML key (dotted below its
// section: "chain.url"), its documentation (the field's comment, with Go
// field names written as TOML keys) and its value in a Config.
type Setting struct {
	Key   string
	Doc   string
	Value any
}

// Settings lists every setting of cfg that a TOML file can set, in
// declaration order (top-level keys first, as TOML needs them).
func Settings(cfg Config) []Setting {
	var out []Setting
	walkSettings(reflect.ValueOf(cfg), "", func(key string, v reflect.Value) {
		out = append(out, Setting{Key: key, Doc: settingDocs[key], Value: v.Interface()})
	})
	return out
}

// SettingDoc returns the documentation of the setting key ("" if none).
func SettingDoc(key string) string { return settingDocs[key] }

var durationType = reflect.TypeOf(time.Duration(0))

// walkSettings calls leaf for every TOML-tagged field under v, descending
// into struct fields; a pointer field is one setting (a table left out by
// default).
func walkSettings(v reflect.Value, prefix string, leaf func(key string, v reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if !f.IsExported() || key == "" || key == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			walkSettings(v.Field(i), prefix+key+".", leaf)
			continue
		}
		leaf(prefix+key, v.Field(i))
	}
}

// SetSetting sets the setting key of cfg from its text form, as a flag or
// an environment variable gives it: a list is comma-separated, a duration
// is written as Go writes one ("500ms", "2m").
func SetSetting(cfg *Config, key, text string) error {
	var target reflect.Value
	walkSettings(reflect.ValueOf(cfg).Elem(), "", func(k string, v reflect.Value) {
		if k == key {
			target = v
		}
	})
	if !target.IsValid() {
		return fmt.Errorf("no setting %q", key)
	}
	text = strings.TrimSpace(text)
	switch {
	case target.Type() == durationType:
		d, err := time.ParseDuration(text)
		if err != nil {
			return fmt.Errorf("not a duration (such as 500ms or 2m): %q", text)
		}
		target.SetInt(int64(d))
		return nil
	}
	switch target.Kind() {
	case reflect.String:
		target.SetString(text)
	case reflect.Bool:
		b, err := strconv.ParseBool(text)
		if err != nil {
			return fmt.Errorf("not true or false: %q", text)
		}
		target.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, err := strconv.ParseInt(text, 10, target.Type().Bits())
		if err != nil {
			return fmt.Errorf("not a number: %q", text)
		}
		target.SetInt(n)
	case reflect.Uint, reflect.Uint64, reflect.Uint32:
		n, err := strconv.ParseUint(text, 10, target.Type().Bits())
		if err != nil {
			return fmt.Errorf("not a number: %q", text)
		}
		target.SetUint(n)
	case reflect.Float64:
		x, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return fmt.Errorf("not a number: %q", text)
		}
		target.SetFloat(x)
	case reflect.Slice:
		if target.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("%s cannot be set from text", key)
		}
		var items []string
		for _, s := range strings.Split(text, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		target.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("%s cannot be set from text", key)
	}
	return nil
}
