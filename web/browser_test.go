package web_test

// Browser tests of the web client: the platform runs in the test process
// (infra/platformtest), and headless Chromium (Debian's chromium package,
// driven by chromedp over the DevTools protocol) loads the page from an
// edge, one browser with its own profile per person. The tests wait on
// conditions in the page with deadlines, never on fixed sleeps.
//
// Chromium is required: scripts/test.sh installs it. MESSENGER_NO_BROWSER=1
// skips these tests. UPDATE_SCREENSHOTS=1 writes docs/screenshots/*.png.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"messenger/edge"
	"messenger/infra/platformtest"
	"messenger/services/presence"
)

const chromiumPath = "/usr/bin/chromium"

// waitTimeout bounds a wait for one condition in a page (a message shown,
// a tick turned): generous, since the suite's packages share two cores with
// the browser. A wait for a volume of work waits on its progress instead
// (page.waitProgress).
const waitTimeout = platformtest.Patience

func needBrowser(t *testing.T) {
	t.Helper()
	if os.Getenv("MESSENGER_NO_BROWSER") == "1" {
		t.Skip("MESSENGER_NO_BROWSER=1: browser tests skipped")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s is missing (%v): install Debian's chromium package (scripts/test.sh does), or set MESSENGER_NO_BROWSER=1 to skip", chromiumPath, err)
	}
}

// startPlatform starts the platform with one edge; presence is told quickly
// so that the dots show within the tests.
func startPlatform(t *testing.T) *platformtest.Platform {
	t.Helper()
	return platformtest.Start(t, platformtest.Options{
		Edges:    1,
		Presence: presence.Config{OnlineDelay: 300 * time.Millisecond, OfflineDelay: time.Second},
	})
}

// page is one browser (its own profile) with one tab.
type page struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu   sync.Mutex
	logs []string
}

// newPage starts a browser with a window of width x height.
func newPage(t *testing.T, name string, width, height int) *page {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	pg := &page{t: t, name: name, ctx: ctx}
	if err := chromedp.Do(ctx); err != nil { // starts the browser and the tab
		t.Fatalf("%s: start chromium: %v", name, err)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(width), int64(height))); err != nil {
		t.Fatalf("%s: viewport: %v", name, err)
	}
	console := chromedp.Console(ctx)
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			pg.mu.Lock()
			pg.logs = append(pg.logs, m.String())
			pg.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			pg.mu.Lock()
			defer pg.mu.Unlock()
			for _, l := range pg.logs {
				t.Logf("%s console: %s", name, l)
			}
		}
	})
	return pg
}

// signIn loads the page at base (with query, e.g. "?transport=poll") signed
// in as user, through the #token= sign-in path, and waits until it is up.
func (pg *page) signIn(base, query, token string) {
	pg.t.Helper()
	pg.do(chromedp.Navigate(base + "/" + query + "#token=" + token))
	pg.waitFor("the app shown", `!document.getElementById('app').hidden`)
}

func (pg *page) do(actions ...chromedp.Action[chromedp.Void]) {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(pg.ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		pg.fatalf("%v", err)
	}
}

// eval runs a JavaScript expression and decodes its value into T.
func eval[T any](pg *page, expr string, opts ...chromedp.EvaluateOption) T {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(pg.ctx, waitTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		pg.fatalf("eval %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript expression until it is truthy, or fails the
// test after waitTimeout.
func (pg *page) waitFor(what, expr string) {
	pg.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(pg.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+expr+")"))
		cancel()
		if err == nil && ok {
			return
		}
		lastErr = err
		if time.Now().After(deadline) {
			pg.fatalf("waited %v for %s (%s); last error: %v", waitTimeout, what, expr, lastErr)
		}
		<-tick.C
	}
}

// waitProgress waits until the JavaScript expression expr is truthy, as
// long as the number the expression progress evaluates to keeps growing
// (platformtest.WaitProgress): for a volume of work, e.g. a page of
// history, whose total time depends on how busy the machine is.
func (pg *page) waitProgress(what, expr, progress string) {
	pg.t.Helper()
	platformtest.WaitProgress(pg.t, func() (int, error) {
		ctx, cancel := context.WithTimeout(pg.ctx, 5*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[struct {
			Done bool    `json:"done"`
			N    float64 `json:"n"`
		}](`({ done: !!(`+expr+`), n: Number(`+progress+`) || 0 })`))
		switch {
		case err != nil:
			return -1, fmt.Errorf("%s: waiting for %s (%s): %v", pg.name, what, expr, err)
		case !v.Done:
			return int(v.N), fmt.Errorf("%s: waiting for %s (%s), at %v", pg.name, what, expr, v.N)
		}
		return int(v.N), nil
	})
}

func (pg *page) fatalf(format string, args ...any) {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(pg.ctx, 3*time.Second)
	defer cancel()
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	pg.t.Fatalf("%s: %s\n--- page text ---\n%s", pg.name, fmt.Sprintf(format, args...), text)
}

// js quotes s as a JavaScript string literal.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// typeInto replaces the value of the input or textarea sel with text, as
// typing would (input events included).
func (pg *page) typeInto(sel, text string) {
	pg.t.Helper()
	pg.do(chromedp.Evaluate[chromedp.Void](`document.querySelector(`+js(sel)+`).value = ''`),
		chromedp.SendKeys(chromedp.CSS(sel), text))
}

func (pg *page) click(sel string) {
	pg.t.Helper()
	pg.do(chromedp.Click(chromedp.CSS(sel)))
}

// send writes text in the composer and sends it.
func (pg *page) send(text string) {
	pg.t.Helper()
	pg.typeInto("#composer-input", text)
	pg.click("#send")
}

// startChat opens the direct chat with user from the "new chat" box.
func (pg *page) startChat(user string) {
	pg.t.Helper()
	pg.typeInto("#new-chat-user", user)
	pg.click("#new-chat button")
	pg.waitFor("the chat with "+user+" open", `document.getElementById('chat-name').textContent === `+js(user))
}

// openConv clicks the conversation named name in the list.
func (pg *page) openConv(name string) {
	pg.t.Helper()
	sel := `[...document.querySelectorAll('#conv-list li')].find((li) => li.querySelector('.conv-name').textContent === ` + js(name) + `)`
	pg.waitFor("conversation "+name+" in the list", sel)
	pg.do(chromedp.Evaluate[chromedp.Void](sel + `.click()`))
	pg.waitFor("conversation "+name+" open", `document.getElementById('chat-name').textContent === `+js(name))
}

// waitConv waits until the conversation named name is in the list and
// returns its id.
func (pg *page) waitConv(name string) string {
	pg.t.Helper()
	sel := `[...document.querySelectorAll('#conv-list li')].find((li) => li.querySelector('.conv-name').textContent === ` + js(name) + `)`
	pg.waitFor("conversation "+name+" in the list", sel)
	return eval[string](pg, sel+`.dataset.conv`)
}

// msgSel finds the message with text (the newest with it).
func msgSel(text string) string {
	return `[...document.querySelectorAll('#msg-list li.msg')].filter((li) => li.querySelector('.text').textContent === ` + js(text) + `).pop()`
}

// waitStatus waits until the own message with text shows status.
func (pg *page) waitStatus(text, status string) {
	pg.t.Helper()
	pg.waitFor(fmt.Sprintf("%q %s", text, status), `(`+msgSel(text)+`)?.dataset.status === `+js(status))
}

func (pg *page) status(text string) string {
	pg.t.Helper()
	return eval[string](pg, `(`+msgSel(text)+`)?.dataset.status || ''`)
}

func (pg *page) waitMessage(text string) {
	pg.t.Helper()
	pg.waitFor(fmt.Sprintf("message %q shown", text), msgSel(text))
}

func (pg *page) connState() string {
	pg.t.Helper()
	return eval[string](pg, `document.getElementById('conn').dataset.state`)
}

// screenshot writes docs/screenshots/name.png when UPDATE_SCREENSHOTS=1.
func (pg *page) screenshot(name string) {
	pg.t.Helper()
	if os.Getenv("UPDATE_SCREENSHOTS") != "1" {
		return
	}
	ctx, cancel := context.WithTimeout(pg.ctx, waitTimeout)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		pg.fatalf("screenshot: %v", err)
	}
	dir := filepath.Join("..", "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		pg.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644); err != nil {
		pg.t.Fatal(err)
	}
}

// apiPost posts body to path as user and decodes the answer (waiting when
// rate limited).
func apiPost(t *testing.T, p *platformtest.Platform, user, path string, body any) map[string]any {
	t.Helper()
	raw, _ := json.Marshal(body)
	for {
		req, _ := http.NewRequest("POST", p.HTTP(0)+path, bytes.NewReader(raw))
		req.Header.Set("Authorization", "Bearer "+p.Token(user))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var ans map[string]any
		err = json.NewDecoder(res.Body).Decode(&ans)
		res.Body.Close()
		if res.StatusCode == http.StatusTooManyRequests {
			time.Sleep(200 * time.Millisecond) // the send rate limit: wait for tokens
			continue
		}
		if err != nil || res.StatusCode/100 != 2 {
			t.Fatalf("POST %s: %d %v %v", path, res.StatusCode, ans, err)
		}
		return ans
	}
}

// apiSend sends a message over the HTTP API as user and returns the ack.
func apiSend(t *testing.T, p *platformtest.Platform, user string, body map[string]any) map[string]any {
	t.Helper()
	return apiPost(t, p, user, "/v1/messages", body)
}

// TestSignInAndChat: the development sign-in; two people chat both ways;
// the ticks of alice's message go sent, delivered, read; typing shows.
func TestSignInAndChat(t *testing.T) {
	needBrowser(t)
	p := startPlatform(t)
	base := p.HTTP(p.StartDevEdge(edge.Config{}))

	alice := newPage(t, "alice", 1280, 800)
	alice.do(chromedp.Navigate(base + "/"))
	alice.waitFor("the development sign-in form", `!document.getElementById('signin-dev').hidden`)
	alice.screenshot("web-signin")
	alice.typeInto("#signin-user", "alice")
	alice.click("#signin-dev button")
	alice.waitFor("signed in as alice", `document.getElementById('me-name').textContent === 'alice'`)
	alice.waitFor("connected", `document.getElementById('conn').dataset.state === 'connected'`)

	// Bob has never connected: alice's message is stored (sent), not delivered.
	alice.startChat("bob")
	alice.send("Hi Bob! Are you there?")
	alice.waitStatus("Hi Bob! Are you there?", "sent")

	bob := newPage(t, "bob", 1280, 800)
	bob.signIn(base, "", p.Token("bob"))
	bob.waitFor("alice's chat with one unread", `document.querySelector('#conv-list li[data-unread="1"] .conv-name')?.textContent === 'alice'`)
	// Bob's page received it: delivered, not read while bob has not opened it.
	alice.waitStatus("Hi Bob! Are you there?", "delivered")
	if s := alice.status("Hi Bob! Are you there?"); s != "delivered" {
		t.Fatalf("status %q before bob opened the chat", s)
	}
	bob.openConv("alice")
	bob.waitMessage("Hi Bob! Are you there?")
	alice.waitStatus("Hi Bob! Are you there?", "read")

	// Typing, then the answer.
	bob.typeInto("#composer-input", "Yes")
	alice.waitFor("bob is typing", `document.getElementById('typing').textContent === 'bob is typing…'`)
	bob.send("Yes, here. What's up?")
	alice.waitMessage("Yes, here. What's up?")
	bob.waitStatus("Yes, here. What's up?", "read") // alice has the chat open
	alice.waitFor("typing hidden", `document.getElementById('typing').textContent === ''`)
	alice.send("Lunch at noon?")
	bob.waitMessage("Lunch at noon?")
	alice.waitStatus("Lunch at noon?", "read")
	bob.send("Sure, see you there")
	alice.waitMessage("Sure, see you there")
	alice.waitFor("bob online", `document.querySelector('#conv-list li .dot')?.dataset.status === 'online'`)

	// Other conversations fill the list: most recent first, unread counts.
	apiPost(t, p, "dave", "/v1/conversations", map[string]any{"id": "g1", "title": "Book club", "members": []string{"alice", "bob"}})
	group := alice.waitConv("Book club")
	apiSend(t, p, "dave", map[string]any{"id": "d1", "conv": group, "text": "Next book: The Left Hand of Darkness"})
	apiSend(t, p, "dave", map[string]any{"id": "d2", "conv": group, "text": "Thursday at 7?"})
	apiSend(t, p, "carol", map[string]any{"id": "c1", "to": "alice", "text": "Are we still on for Friday?"})
	alice.waitFor("carol's chat first, one unread", `document.querySelector('#conv-list li').dataset.unread === '1' && document.querySelector('#conv-list li .conv-name').textContent === 'carol'`)
	alice.waitFor("two unread in the group", `[...document.querySelectorAll('#conv-list li')].find((li) => li.querySelector('.conv-name').textContent === 'Book club')?.dataset.unread === '2'`)
	alice.waitFor("bob's chat open and read", `document.querySelector('#conv-list li[aria-current]')?.dataset.unread === '0'`)
	alice.screenshot("web-chat")

	// Sign out: back to the sign-in form.
	alice.click("#signout")
	alice.waitFor("the sign-in form", `!document.getElementById('signin').hidden && !document.getElementById('signin-dev').hidden`)
}

// TestGroups: a group made from the page, its members managed from the
// info panel, every change shown to the members as a line in the chat.
func TestGroups(t *testing.T) {
	needBrowser(t)
	alice, bob := aliceAndBob(t)

	alice.click("#new-group summary")
	alice.typeInto("#new-group-title", "Weekend trip")
	alice.typeInto("#new-group-members", "bob, carol")
	alice.click("#new-group-form button")
	alice.waitFor("the group open", `document.getElementById('chat-name').textContent === 'Weekend trip'`)
	alice.waitFor("the creation line", `[...document.querySelectorAll('#msg-list li.system')].some((li) => li.textContent === 'You created the group “Weekend trip”')`)
	alice.send("Who is in for Saturday?")
	alice.waitStatus("Who is in for Saturday?", "sent")

	bob.openConv("Weekend trip")
	bob.waitMessage("Who is in for Saturday?")
	bob.waitFor("the sender's name", `(`+msgSel("Who is in for Saturday?")+`).querySelector('.from')?.textContent === 'alice'`)
	bob.waitFor("the creation line", `[...document.querySelectorAll('#msg-list li.system')].some((li) => li.textContent === 'alice created the group “Weekend trip”')`)
	bob.send("Me! Count me in.")
	alice.waitMessage("Me! Count me in.")

	// The info panel: alice is the admin.
	alice.click("#info-toggle")
	alice.waitFor("three members", `document.querySelectorAll('#members li').length === 3`)
	alice.waitFor("alice admin", `document.querySelector('#members li[data-user="alice"]').dataset.role === 'admin'`)
	alice.typeInto("#add-member-user", "dave")
	alice.click("#add-member-form button")
	alice.waitFor("dave added", `document.querySelectorAll('#members li').length === 4`)
	alice.waitFor("the line", `[...document.querySelectorAll('#msg-list li.system')].some((li) => li.textContent === 'You added dave')`)
	bob.waitFor("the line", `[...document.querySelectorAll('#msg-list li.system')].some((li) => li.textContent === 'alice added dave')`)
	// An error is shown in the panel: bob is a member already.
	alice.typeInto("#add-member-user", "bob")
	alice.click("#add-member-form button")
	alice.waitFor("the conflict shown", `document.getElementById('info-error').textContent !== ''`)
	alice.typeInto("#rename-title", "Weekend trip (Saturday)")
	alice.click("#rename-form button")
	bob.waitFor("the new title", `document.getElementById('chat-name').textContent === 'Weekend trip (Saturday)'`)
	bob.waitFor("the line", `[...document.querySelectorAll('#msg-list li.system')].some((li) => li.textContent === 'alice changed the title to “Weekend trip (Saturday)”')`)
	alice.do(chromedp.Evaluate[chromedp.Void](`document.querySelector('#members button[data-remove="dave"]').click()`))
	alice.waitFor("dave removed", `document.querySelectorAll('#members li').length === 3`)
	bob.waitFor("the line", `[...document.querySelectorAll('#msg-list li.system')].some((li) => li.textContent === 'alice removed dave')`)
	alice.do(chromedp.Evaluate[chromedp.Void](`document.getElementById('add-member-user').value = ''; document.getElementById('info-error').textContent = ''`))
	alice.screenshot("web-group")

	// Bob is no admin: no add or rename; he leaves.
	bob.click("#info-toggle")
	bob.waitFor("the panel", `!document.getElementById('info').hidden && document.querySelectorAll('#members li').length === 3`)
	if hidden := eval[bool](bob, `document.getElementById('add-member-form').hidden && document.getElementById('rename-form').hidden`); !hidden {
		t.Fatal("bob, a member, sees the admin forms")
	}
	bob.click("#leave")
	bob.waitFor("the composer off", `document.getElementById('composer-input').disabled`)
	alice.waitFor("the line", `[...document.querySelectorAll('#msg-list li.system')].some((li) => li.textContent === 'bob left')`)
}

// TestScrollBack: a conversation of 120 messages opens on its newest page
// (50 on a wide window, 20 on a narrow one); scrolling up loads the older
// pages, and what was on the screen stays in place.
func TestScrollBack(t *testing.T) {
	needBrowser(t)
	p := startPlatform(t)
	base := p.HTTP(0)
	for i := 1; i <= 120; i++ {
		apiSend(t, p, "alice", map[string]any{"id": fmt.Sprintf("m%d", i), "to": "bob", "text": fmt.Sprintf("message number %d", i)})
	}

	bob := newPage(t, "bob", 1280, 800)
	bob.signIn(base, "", p.Token("bob"))
	bob.waitProgress("120 unread", `document.querySelector('#conv-list li[data-unread="120"]')`,
		`Math.max(0, ...[...document.querySelectorAll('#conv-list li')].map((li) => +li.dataset.unread || 0))`)
	bob.openConv("alice")
	bob.waitMessage("message number 120")
	if n := eval[int](bob, `document.querySelectorAll('#msg-list li.msg').length`); n != 50 {
		t.Fatalf("the first page has %d messages, want 50", n)
	}
	bob.waitFor("scrolled to the bottom", `(() => { const b = document.getElementById('messages'); return b.scrollHeight - b.scrollTop - b.clientHeight < 5; })()`)
	top := `document.querySelector('#msg-list li.msg').dataset.seq`
	count := `document.querySelectorAll('#msg-list li.msg').length`
	for _, want := range []int{100, 120} {
		first := eval[string](bob, top)
		// Scroll to the top: the page before loads, and the message that was
		// first stays where it was on the screen.
		before := bob.scrollToTop(first)
		bob.waitProgress(fmt.Sprintf("%d messages", want), fmt.Sprintf(`%s === %d`, count, want), count)
		after := eval[float64](bob, `document.querySelector('#msg-list li[data-seq="`+first+`"]').getBoundingClientRect().top`)
		if d := after - before; d < -40 || d > 40 {
			t.Fatalf("message %s moved by %.0f px when the older page came", first, d)
		}
	}
	bob.waitFor("the first message", msgSel("message number 1"))
	bob.waitFor("the beginning", `document.getElementById('history-status').dataset.state === 'start'`)
	for i := 1; i <= 120; i++ { // each once, in order
		if n := eval[int](bob, fmt.Sprintf(`document.querySelectorAll('#msg-list li[data-seq="%d"]').length`, i)); n != 1 {
			t.Fatalf("seq %d shown %d times", i, n)
		}
	}

	// A narrow window: one pane at a time, pages of 20.
	phone := newPage(t, "bob-phone", 390, 780)
	phone.signIn(base, "", p.Token("bob"))
	phone.waitFor("the list alone", `document.getElementById('app').dataset.view === 'list' && document.getElementById('main').offsetParent === null`)
	phone.waitFor("the chat in the list", `document.querySelector('#conv-list li .conv-name')?.textContent === 'alice'`)
	phone.openConv("alice")
	phone.waitMessage("message number 120")
	phone.waitFor("the chat alone", `document.getElementById('sidebar').offsetParent === null`)
	if n := eval[int](phone, `document.querySelectorAll('#msg-list li.msg').length`); n != 20 {
		t.Fatalf("the first narrow page has %d messages, want 20", n)
	}
	phone.send("Got them all, thanks!")
	phone.waitStatus("Got them all, thanks!", "sent")
	phone.click("#back")
	phone.waitFor("the list again", `document.getElementById('app').dataset.view === 'list'`)
}

// scrollToTop scrolls the messages to the top at once and returns where
// the message with seq anchor is on the screen just after, before an older
// page can come. The scroll must make the page load the older page: when
// its scroll event finds no load started, the page missed that it was
// scrolled up (a render between the scroll and its event sets ui.js's
// lastScrollTop to the top already, so maybeLoadOlder sees no move up);
// that is logged, and the person scrolls down a little and up again, as a
// person would. A scroll without its event fails after waitTimeout.
func (pg *page) scrollToTop(anchor string) float64 {
	pg.t.Helper()
	type scrolled struct {
		Before  float64 `json:"before"`
		Loading bool    `json:"loading"`
	}
	for attempt := 1; ; attempt++ {
		v := eval[scrolled](pg, `new Promise((resolve) => {
			const b = document.getElementById('messages');
			let before;
			b.addEventListener('scroll', () => {
				// After the page's own handler: has it started loading?
				const c = window.messenger.openConv();
				resolve({ before, loading: !!(c && c.loadingOlder) });
			}, { once: true });
			b.scrollTop = 0;
			before = document.querySelector('#msg-list li[data-seq="`+anchor+`"]').getBoundingClientRect().top;
		})`, chromedp.EvalAwaitPromise)
		if v.Loading {
			return v.Before
		}
		if attempt == 5 {
			pg.fatalf("scrolled to the top %d times, and no older page was asked for", attempt)
		}
		pg.t.Logf("%s: scrolled to the top, and no older page was asked for (the scroll went unseen); scrolling again", pg.name)
		eval[bool](pg, `new Promise((resolve) => {
			const b = document.getElementById('messages');
			b.addEventListener('scroll', () => resolve(true), { once: true });
			b.scrollTop = 600;
		})`, chromedp.EvalAwaitPromise)
	}
}

// chatBothWays: alice (on the page pa) and bob (pb) write to each other.
func chatBothWays(t *testing.T, pa, pb *page, tag string) {
	t.Helper()
	pa.startChat("bob")
	a := "hello bob over " + tag
	pa.send(a)
	pb.openConv("alice")
	pb.waitMessage(a)
	pa.waitStatus(a, "read")
	b := "hello alice, I got it over " + tag
	pb.send(b)
	pa.waitMessage(b)
	for i := 0; i < 3; i++ {
		pa.send(fmt.Sprintf("%s #%d", tag, i))
	}
	for i := 0; i < 3; i++ {
		pb.waitMessage(fmt.Sprintf("%s #%d", tag, i))
	}
	for i := 0; i < 3; i++ { // bob has the chat open: read
		pa.waitStatus(fmt.Sprintf("%s #%d", tag, i), "read")
	}
	// Nothing twice, in order.
	got := eval[string](pb, `[...document.querySelectorAll('#msg-list li.msg .text')].map((e) => e.textContent).join('|')`)
	want := strings.Join([]string{a, b, tag + " #0", tag + " #1", tag + " #2"}, "|")
	if got != want {
		t.Fatalf("bob sees %q, want %q", got, want)
	}
}

// TestLongPolling: with ?transport=poll the page long-polls and still chats
// both ways, ticks included.
func TestLongPolling(t *testing.T) {
	needBrowser(t)
	p := startPlatform(t)
	base := p.HTTP(0)
	alice := newPage(t, "alice", 1280, 800)
	alice.signIn(base, "?transport=poll", p.Token("alice"))
	alice.waitFor("polling", `document.getElementById('conn').dataset.state === 'polling'`)
	bob := newPage(t, "bob", 1280, 800)
	bob.signIn(base, "", p.Token("bob"))
	chatBothWays(t, alice, bob, "long polling")
	if s := alice.connState(); s != "polling" {
		t.Fatalf("alice's page is %q, want polling", s)
	}
}

// wsBlockingProxy is a proxy in front of the edge that lets every request
// through but the WebSocket upgrade, as some corporate proxies do. (Chromium's
// Network.setBlockedURLs blocks HTTP requests but not WebSocket handshakes.)
func wsBlockingProxy(t *testing.T, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/ws" {
			http.Error(w, "WebSockets are blocked here", http.StatusBadGateway)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv.URL
}

// TestWebSocketBlocked: the WebSocket cannot connect (a proxy refuses the
// upgrade); the page falls back to long polling by itself and still chats.
func TestWebSocketBlocked(t *testing.T) {
	needBrowser(t)
	p := startPlatform(t)
	base := wsBlockingProxy(t, p.HTTP(0))
	alice := newPage(t, "alice", 1280, 800)
	alice.signIn(base, "", p.Token("alice"))
	alice.waitFor("polling", `document.getElementById('conn').dataset.state === 'polling'`)
	bob := newPage(t, "bob", 1280, 800)
	bob.signIn(base, "", p.Token("bob"))
	chatBothWays(t, alice, bob, "fallback")
}

// TestReloadAndReconnect: a reloaded page keeps its conversations and the
// open chat; a page that loses the network shows "reconnecting…", keeps
// what is written meanwhile, and sends it once back.
func TestReloadAndReconnect(t *testing.T) {
	needBrowser(t)
	alice, bob := aliceAndBob(t)
	chatBothWays(t, alice, bob, "websocket")
	texts := `[...document.querySelectorAll('#msg-list li.msg')].map((li) => li.dataset.key + ':' + li.querySelector('.text').textContent).join('|')`
	before := eval[string](alice, texts)

	alice.do(chromedp.Reload())
	alice.waitFor("the app", `!document.getElementById('app').hidden`)
	alice.waitFor("the chat with bob open", `document.getElementById('chat-name').textContent === 'bob'`)
	alice.waitFor("the conversation in the list", `document.querySelector('#conv-list li .conv-name')?.textContent === 'bob'`)
	alice.waitMessage("websocket #2")
	alice.waitFor("connected", `document.getElementById('conn').dataset.state === 'connected'`)
	if after := eval[string](alice, texts); after != before {
		t.Fatalf("after the reload the chat shows %q, before %q", after, before)
	}
	bob.send("still there after your reload?")
	alice.waitMessage("still there after your reload?")

	// The network drops: reconnecting, the message waits (pending), then goes.
	setOffline := func(off bool) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
				return chromedp.Void{}, err
			}
			var rules []*network.Conditions
			if off {
				rules = []*network.Conditions{{Offline: true, DownloadThroughput: -1, UploadThroughput: -1}}
			}
			if _, err := cdp.Call(ctx, tg, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{MatchedNetworkConditions: rules}); err != nil {
				return chromedp.Void{}, err
			}
			_, err := cdp.Call(ctx, tg, network.OverrideNetworkState, network.OverrideNetworkStateParams{Offline: off, DownloadThroughput: -1, UploadThroughput: -1})
			return chromedp.Void{}, err
		}
	}
	alice.do(setOffline(true))
	alice.waitFor("reconnecting", `document.getElementById('conn').dataset.state === 'reconnecting'`)
	alice.send("written while offline")
	alice.waitStatus("written while offline", "pending")
	bob.send("sent while alice was away")
	alice.do(setOffline(false))
	alice.waitFor("connected", `document.getElementById('conn').dataset.state === 'connected'`)
	alice.waitStatus("written while offline", "read")
	alice.waitMessage("sent while alice was away")
	bob.waitMessage("written while offline")
	if c := eval[int](bob, `document.querySelectorAll('#msg-list li.msg').length - new Set([...document.querySelectorAll('#msg-list li.msg')].map((li) => li.dataset.seq)).size`); c != 0 {
		t.Fatalf("bob sees %d messages twice", c)
	}
	if c := eval[int](bob, `[...document.querySelectorAll('#msg-list li.msg .text')].filter((e) => e.textContent === 'written while offline').length`); c != 1 {
		t.Fatalf("bob sees the offline message %d times", c)
	}
}

// TestCursorExpired: a page whose saved cursor the server does not know
// (cursor_expired: a WebSocket error frame, or HTTP 410 to a poll) reloads
// its conversations and goes on from the newest event.
func TestCursorExpired(t *testing.T) {
	needBrowser(t)
	p := startPlatform(t)
	base := p.HTTP(0)
	apiSend(t, p, "bob", map[string]any{"id": "b1", "to": "alice", "text": "before"})
	apiSend(t, p, "bob", map[string]any{"id": "b2", "to": "carol", "text": "before"})
	for _, c := range []struct{ user, query string }{{"alice", ""}, {"carol", "?transport=poll"}} {
		pg := newPage(t, c.user, 1280, 800)
		pg.signIn(base, c.query, p.Token(c.user))
		pg.openConv("bob")
		pg.waitMessage("before")
		pg.do(chromedp.Evaluate[chromedp.Void](`(() => {
			const k = 'messenger.user.` + c.user + `';
			const u = JSON.parse(localStorage.getItem(k));
			u.cursor = '99999999999';
			localStorage.setItem(k, JSON.stringify(u));
		})()`))
		pg.do(chromedp.Reload())
		pg.waitFor("the chat open again", `document.getElementById('chat-name').textContent === 'bob'`)
		pg.waitMessage("before")
		pg.waitFor("a cursor from the server", `JSON.parse(localStorage.getItem('messenger.user.`+c.user+`')).cursor !== '99999999999'`)
		apiSend(t, p, "bob", map[string]any{"id": "after-" + c.user, "to": c.user, "text": "after"})
		pg.waitMessage("after")
		pg.send("got it")
		pg.waitStatus("got it", "sent")
	}
}

// aliceAndBob starts a platform and signs alice and bob in, each in a
// browser of its own on a wide window.
func aliceAndBob(t *testing.T) (alice, bob *page) {
	t.Helper()
	p := startPlatform(t)
	base := p.HTTP(0)
	alice = newPage(t, "alice", 1280, 800)
	alice.signIn(base, "", p.Token("alice"))
	bob = newPage(t, "bob", 1280, 800)
	bob.signIn(base, "", p.Token("bob"))
	return alice, bob
}
