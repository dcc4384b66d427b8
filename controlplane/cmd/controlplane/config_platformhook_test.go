package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadConfigPlatformWebhook(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "cell")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	const secret = "0123456789abcdef0123"
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		errs []string // substrings of the error; none means valid
		url  string
	}{
		{name: "off by default", env: map[string]string{}},
		{name: "env", env: map[string]string{envPlatformWebhookURL: "https://platform.example/hooks", envPlatformWebhookSecret: secret},
			url: "https://platform.example/hooks"},
		{name: "flag over env", env: map[string]string{envPlatformWebhookURL: "https://a.example/", envPlatformWebhookSecret: secret},
			args: []string{"-platform-webhook-url", "http://127.0.0.1:9/hooks"}, url: "http://127.0.0.1:9/hooks"},
		{name: "no secret", env: map[string]string{envPlatformWebhookURL: "https://platform.example/hooks"}, errs: []string{envPlatformWebhookSecret}},
		{name: "short secret", env: map[string]string{envPlatformWebhookURL: "https://platform.example/hooks", envPlatformWebhookSecret: "short"},
			errs: []string{envPlatformWebhookSecret}},
		{name: "not a URL", env: map[string]string{envPlatformWebhookURL: "platform.example/hooks", envPlatformWebhookSecret: secret},
			errs: []string{envPlatformWebhookURL}},
		{name: "not http", env: map[string]string{envPlatformWebhookURL: "ftp://platform.example/", envPlatformWebhookSecret: secret},
			errs: []string{envPlatformWebhookURL}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.env[envCellBin] = exe
			c, err := loadConfig(tc.args, func(k string) string { return tc.env[k] })
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if c.PlatformWebhookURL != tc.url || (tc.url != "" && c.PlatformWebhookSecret != secret) {
					t.Fatalf("url %q secret %q", c.PlatformWebhookURL, c.PlatformWebhookSecret)
				}
				return
			}
			for _, want := range tc.errs {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error %v does not mention %s", err, want)
				}
			}
		})
	}
}
