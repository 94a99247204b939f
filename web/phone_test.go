package web_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// fitsScreen lists what does not fit a width-wide screen: the document
// wider than the screen (a horizontal scroll), and each element of sels
// that is missing, has no size or lies partly outside the viewport.
func (pg *page) fitsScreen(width int, sels ...string) []string {
	pg.t.Helper()
	list, _ := json.Marshal(sels)
	return eval[[]string](pg, `((W, sels) => {
		const out = [];
		for (const el of [document.documentElement, document.body]) {
			if (el.scrollWidth > W) out.push(el.tagName + ' scrollWidth ' + el.scrollWidth);
		}
		if (window.innerWidth !== W) out.push('innerWidth ' + window.innerWidth);
		for (const sel of sels) {
			const els = document.querySelectorAll(sel);
			if (els.length === 0) out.push(sel + ': none');
			for (const el of els) {
				const r = el.getBoundingClientRect();
				if (r.width === 0 || r.height === 0) out.push(sel + ': not shown');
				else if (r.left < 0 || r.right > W + 0.5) out.push(sel + ': from ' + r.left + ' to ' + r.right + ' px');
			}
		}
		return out;
	})(`+strconv.Itoa(width)+`, `+string(list)+`)`)
}

// TestPhoneLayout (issue 15): on a 390 px wide phone, a long last message
// (words, and one unbroken run) must not widen the conversation list: the
// page has no horizontal scroll, and Sign out, the Chat button, the times
// and the unread badges stay on the screen; the same in an open chat,
// where messages of today sit under a "Today" separator.
func TestPhoneLayout(t *testing.T) {
	needBrowser(t)
	p := startPlatform(t)
	base := p.HTTP(0)
	long := strings.TrimSpace(strings.Repeat("a very long last message that goes on and on ", 15))
	unbroken := strings.Repeat("x", 400)
	apiSend(t, p, "bob", map[string]any{"id": "b1", "to": "alice", "text": "Hi"})
	apiSend(t, p, "bob", map[string]any{"id": "b2", "to": "alice", "text": long})
	apiSend(t, p, "carol", map[string]any{"id": "c1", "to": "alice", "text": unbroken})
	apiPost(t, p, "dave", "/v1/conversations", map[string]any{"id": "g1", "title": "A group whose title is much too long for a phone screen to show whole", "members": []string{"alice"}})

	phone := newPage(t, "alice-phone", 390, 780)
	phone.signIn(base, "", p.Token("alice"))
	phone.waitFor("three conversations, two with unread badges", `document.querySelectorAll('#conv-list li').length === 3 && document.querySelectorAll('#conv-list .badge').length === 2`)
	if bad := phone.fitsScreen(390, "#signout", "#notify", "#new-chat button", "#conv-list .conv-time", "#conv-list .badge", "#conv-list .conv-name"); len(bad) > 0 {
		t.Fatalf("the list does not fit 390 px: %q", bad)
	}
	phone.screenshot("web-narrow-list")

	// The unbroken run wraps inside its bubble.
	phone.openConv("carol")
	phone.waitMessage(unbroken)
	if bad := phone.fitsScreen(390, "#back", "#chat-name", "#send", "#msg-list .meta time", "#msg-list .bubble"); len(bad) > 0 {
		t.Fatalf("carol's chat does not fit 390 px: %q", bad)
	}
	phone.click("#back")
	phone.waitFor("the list again", `document.getElementById('app').dataset.view === 'list'`)

	phone.openConv("bob")
	phone.waitMessage(long)
	phone.waitFor("a Today separator above the messages", `document.querySelector('#msg-list li').classList.contains('day') && document.querySelector('#msg-list li.day').textContent === 'Today'`)
	if n := eval[int](phone, `document.querySelectorAll('#msg-list li.day').length`); n != 1 {
		t.Fatalf("%d date separators for messages of one day", n)
	}
	phone.send("That is a long one! Reading it on the bus.")
	phone.waitStatus("That is a long one! Reading it on the bus.", "sent")
	if bad := phone.fitsScreen(390, "#back", "#chat-name", "#send", "#msg-list .meta time", "#msg-list .bubble"); len(bad) > 0 {
		t.Fatalf("the chat does not fit 390 px: %q", bad)
	}
	phone.screenshot("web-narrow-chat")
	phone.click("#back")
	phone.waitFor("the list again", `document.getElementById('app').dataset.view === 'list'`)
	if bad := phone.fitsScreen(390, "#signout", "#notify", "#new-chat button", "#conv-list .conv-time", "#conv-list .conv-preview"); len(bad) > 0 {
		t.Fatalf("the list does not fit 390 px after the chat: %q", bad)
	}
}

// TestDateSeparatorLabels: the separator's words for a day, in the
// person's locale ("Today", "Yesterday", else the date with its weekday,
// the year only when it is another year's), checked on the page's own
// function for fixed days, in English and, with the browser's locale
// switched, in German.
func TestDateSeparatorLabels(t *testing.T) {
	needBrowser(t)
	p := startPlatform(t)
	pg := newPage(t, "alice", 800, 600)
	pg.signIn(p.HTTP(0), "", p.Token("alice"))
	labels := func() []string {
		return eval[[]string](pg, `import('/util.js').then(({ dayLabel }) => {
			const now = new Date(2026, 0, 2, 9, 30);
			return [
				dayLabel(new Date(2026, 0, 2, 0, 1).getTime(), now),
				dayLabel(new Date(2026, 0, 1, 23, 59).getTime(), now),
				dayLabel(new Date(2025, 11, 31, 12, 0).getTime(), now),
				dayLabel(new Date(2026, 0, 2, 8, 0).getTime(), new Date(2026, 2, 4, 10, 0)),
			];
		})`, chromedp.EvalAwaitPromise)
	}
	check := func(locale string, want []string) {
		t.Helper()
		pg.do(func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := cdp.Call(ctx, tg, emulation.SetLocaleOverride, emulation.SetLocaleOverrideParams{Locale: locale})
			return chromedp.Void{}, err
		})
		if got := labels(); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s: labels %q, want %q", locale, got, want)
		}
	}
	check("en_US", []string{"Today", "Yesterday", "Wednesday, December 31, 2025", "Friday, January 2"})
	check("de_DE", []string{"Heute", "Gestern", "Mittwoch, 31. Dezember 2025", "Freitag, 2. Januar"})
}
