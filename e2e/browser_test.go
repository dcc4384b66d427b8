package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath finds Debian's chromium (installed by `make deps`).
func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found: run `make deps` (Debian package chromium)")
	return ""
}

// page is one browser tab with helpers that query through the widget's open shadow root.
type page struct {
	t   *testing.T
	ctx context.Context
}

// q is the JS expression of a data-testid element, looked up in the document and in the widget's
// shadow root.
func q(testid string) string {
	return fmt.Sprintf(`((window.AtendeWidget && window.AtendeWidget.root && window.AtendeWidget.root.querySelector('[data-testid=%q]')) || document.querySelector('[data-testid=%q]'))`, testid, testid)
}

func (p *page) navigate(url string) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, chromedp.Navigate(url)); err != nil {
		p.t.Fatal(err)
	}
}

// eval runs a JS statement list (wrapped so it returns true).
func (p *page) eval(js string) {
	p.t.Helper()
	if _, err := chromedp.Run(p.ctx, chromedp.Evaluate[bool](`(()=>{`+js+`; return true})()`)); err != nil {
		p.t.Fatal(err)
	}
}

// truthy evaluates a JS expression as a boolean; exceptions count as false.
func (p *page) truthy(expr string) bool {
	p.t.Helper()
	ok, err := chromedp.Run(p.ctx, chromedp.Evaluate[bool](`(()=>{try{return !!(`+expr+`)}catch(e){return false}})()`))
	if err != nil {
		p.t.Fatal(err)
	}
	return ok
}

// waitJS polls a boolean JS expression until it is true or 20 s pass.
func (p *page) waitJS(what, expr string) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if p.truthy(expr) {
			return
		}
		if time.Now().After(deadline) {
			text, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.body.innerText + '\n' + ((window.AtendeWidget && window.AtendeWidget.root && window.AtendeWidget.root.textContent) || '')`))
			p.t.Fatalf("timed out waiting for %s; page text:\n%s", what, text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fill sets an input's value as typing would and fires input/change.
func (p *page) fill(testid, value string) {
	p.t.Helper()
	p.waitJS(testid+" present", q(testid))
	p.eval(fmt.Sprintf(`const el=%s; el.focus(); el.value=%q; el.dispatchEvent(new Event('input',{bubbles:true})); el.dispatchEvent(new Event('change',{bubbles:true}))`, q(testid), value))
}

func (p *page) click(testid string) {
	p.t.Helper()
	p.waitJS(testid+" present", q(testid))
	p.eval(q(testid) + `.click()`)
}

// hasMessage is a JS expression: some message-body under container has exactly text.
func hasMessage(container, text string) string {
	return fmt.Sprintf(`Array.from(%s.querySelectorAll('[data-testid=message-body]')).some(e => e.textContent.trim() === %q)`, q(container), text)
}

// shown is a JS expression: the element with testid exists and is not hidden.
func shown(testid string) string { return fmt.Sprintf(`(%s && !%s.hidden)`, q(testid), q(testid)) }

// TestBrowserSmoke drives the real widget and console in headless Chromium: with no agent online
// the widget shows the offline form, the visitor chats anyway and sees their place in the queue,
// the console shows the message, the agent accepts and replies, the widget shows the reply; a
// private note stays in the console; once resolved, the visitor rates the chat.
func TestBrowserSmoke(t *testing.T) {
	s := startStack(t, "ATENDE_SEED_DEV=false")
	acme, _ := s.createTenant("acme")

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("headless", "new"))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(browser, 3*time.Minute)
	defer cancel()

	base := "http://" + s.host("acme")
	widget := &page{t: t, ctx: ctx}
	widget.navigate(base + "/widget-demo")
	widget.click("widget-launcher")
	// Nobody is logged in to the console yet: the offline form, with the reason; a chat may still
	// start (the tenant does not require an online agent by default).
	widget.waitJS("the offline form", shown("widget-offline")+` && `+q("widget-offline-reason")+`.textContent.includes('no agent is online')`)
	widget.click("widget-chat-anyway")
	widget.waitJS("the chat composer", `!`+shown("widget-offline")+` && !`+q("widget-input")+`.closest('form').hidden`)
	if widget.truthy(q("widget-name")) {
		widget.fill("widget-name", "Browser Visitor")
	}
	widget.fill("widget-input", "Hello from the widget")
	widget.click("widget-send")
	widget.waitJS("widget shows its own message", hasMessage("widget-messages", "Hello from the widget"))
	widget.waitJS("widget shows its place in the queue", shown("widget-queue")+` && `+q("widget-queue")+`.textContent.includes('next in the queue')`)

	consoleCtx, cancelConsole := chromedp.NewContext(browser)
	defer cancelConsole()
	console := &page{t: t, ctx: consoleCtx}
	console.navigate(base + "/console")
	console.fill("login-email", acme.Admin.Email)
	console.fill("login-password", acme.Admin.Password)
	console.click("login-submit")
	console.waitJS("queued chat in the console", q("queue")+`.querySelector('[data-testid=queue-item]')`)
	console.eval(q("queue") + `.querySelector('[data-testid=queue-item] [data-testid=accept]').click()`)
	console.waitJS("console shows the visitor's message", hasMessage("chat-messages", "Hello from the widget"))
	console.fill("chat-input", "Hi! An agent here.")
	console.click("chat-send")
	console.waitJS("console shows the reply", hasMessage("chat-messages", "Hi! An agent here."))

	widget.waitJS("widget shows the agent's reply", hasMessage("widget-messages", "Hi! An agent here."))

	// A private note: shown (as a note) in the console, never sent to the widget.
	console.click("note-mode")
	console.fill("chat-input", "Only agents read this")
	console.click("chat-send")
	console.waitJS("console shows the note", q("chat-messages")+`.querySelector('[data-testid=note]') && `+hasMessage("chat-messages", "Only agents read this"))

	// Resolved: the widget asks for a rating, which the console then shows.
	console.click("resolve")
	widget.waitJS("the rating prompt", shown("widget-csat")+` && `+shown("widget-transcript"))
	widget.click("widget-csat-5")
	widget.click("widget-csat-send")
	widget.waitJS("thanks for the rating", shown("widget-csat-thanks"))
	console.waitJS("console shows the rating", q("chat-status")+`.textContent.includes('Rated 5/5')`)
	if widget.truthy(hasMessage("widget-messages", "Only agents read this")) {
		t.Fatal("the widget shows a private note")
	}
}
