package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"messenger/infra/platformtest"
	"messenger/infra/pushtest"
)

// `messenger all` with FCM configured against a local FCM: an away
// member's registered device is pushed (through the notifier role inside
// all), the text not in it; `messenger push test` prints each device's
// answer, and removes a device the provider calls gone.
func TestAllPushesAnAwayMemberAndPushTestPrintsAnswers(t *testing.T) {
	fcm := pushtest.NewFCM(t)
	addr, natsAddr, data := freeAddr(t), freeAddr(t), t.TempDir()
	pushArgs := []string{"--fcm-credentials", fcm.CredentialsFile, "--fcm-endpoint", fcm.URL,
		"--push-allow-hosts", fcm.Addr, "--push-ca-file", fcm.CAFile}
	start(t, append([]string{"all", "--http", addr, "--nats-listen", natsAddr, "--data", data, "--clickhouse", "",
		"--push-coalesce", "300ms"}, pushArgs...)...)

	register := func(user, tok string) string {
		body, _ := json.Marshal(map[string]string{"platform": "fcm", "token": tok})
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/push/tokens", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token(t, user))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ ID string }
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("register: %d %v", resp.StatusCode, err)
		}
		return out.ID
	}
	phone := register("bob", "bob-phone-token")
	old := register("bob", "bob-old-tablet")
	if code, ack, err := postMessage(addr, token(t, "alice"), "p1", "bob", "a secret"); err != nil || code != 200 {
		t.Fatalf("send: %d %v %v", code, ack, err)
	}
	platformtest.Eventually(t, 45*time.Second, func() error {
		if n := len(fcm.Messages()); n < 2 {
			return fmt.Errorf("%d FCM messages, want 2; metrics:\n%s", n, pushMetrics(addr))
		}
		return nil
	})
	for _, m := range fcm.Messages() {
		raw, _ := json.Marshal(m)
		if strings.Contains(string(raw), "a secret") || !strings.Contains(string(raw), "alice") {
			t.Fatalf("push %s: want alice named and no text", raw)
		}
	}

	fcm.Unregister("bob-old-tablet")
	cmd := exec.Command(binary, append([]string{"push", "test", "bob", "--nats", "nats://" + natsAddr,
		"--nats-creds", filepath.Join(data, "nats"), "--log-level", "error"}, pushArgs...)...)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("push test with a gone device exited 0:\n%s", out)
	}
	lines := string(out)
	if !strings.Contains(lines, "fcm      "+phone+"  ok") || !strings.Contains(lines, "fcm      "+old+"  gone") {
		t.Fatalf("push test output:\n%s", out)
	}
	out, err = exec.Command(binary, append([]string{"push", "test", "bob", "--nats", "nats://" + natsAddr,
		"--nats-creds", filepath.Join(data, "nats"), "--log-level", "error"}, pushArgs...)...).CombinedOutput()
	if err != nil || strings.Contains(string(out), old) {
		t.Fatalf("after the gone device was removed: %v\n%s", err, out)
	}
}

// pushMetrics are the notifier's lines of /metrics.
func pushMetrics(addr string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		if (strings.HasPrefix(l, "messenger_push_") || strings.HasPrefix(l, "messenger_notifier_")) && !strings.Contains(l, "_bucket") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
