/*! edgerec.js: landing-page variants, recommendation widgets and beacons
 * for edgerec. No dependencies. Load it synchronously in <head>:
 *   <script src="https://edge.example.com/v1/edgerec.js" data-page="lp_consulting"></script>
 * README "The browser script" documents the attributes and window.edgerec. */
(function (w, d) {
  'use strict';
  if (w.edgerec) return; // loaded twice
  var me = d.currentScript || d.createElement('script');
  var attr = function (el, name) { return el.getAttribute(name); };
  // The API's base URL: the script's own, so a proxy path prefix works.
  var base = me.src.replace(/edgerec\.js(\?.*)?$/, '');
  var page = attr(me, 'data-page');
  var user = attr(me, 'data-user');
  var timeout = +attr(me, 'data-timeout') || 800;
  var cred = attr(me, 'data-credentials') || 'include';
  var root = d.documentElement;
  var VID = 'edgerec_vid', DECS = 'edgerec_decisions', DONE = 'data-edgerec-done';
  var DEC = '[data-edgerec],[data-edgerec-href],[data-edgerec-src],[data-edgerec-attr],[data-edgerec-show]';
  var REC = '[data-edgerec-placement]';
  var now = function () { return Math.round(performance.now()); };
  var each = function (sel, fn) { Array.prototype.forEach.call(d.querySelectorAll(sel), fn); };
  var enc = encodeURIComponent;

  // Anti-flicker: the marked elements stay hidden while html has the class
  // edgerec-wait (a decision) or edgerec-wait-recs (widgets), and each
  // shows as soon as it is filled (data-edgerec-done). So the default
  // headline is never painted for a visitor who gets another one.
  var hide = function (cls, sel) {
    return sel.split(',').map(function (s) { return 'html.' + cls + ' ' + s + ':not([' + DONE + '])'; }).join(',') +
      '{visibility:hidden!important}';
  };
  var style = d.createElement('style');
  // Without a decision (timeout, error) a section for some variants
  // (data-edgerec-show) shows only if it lists "fallback".
  style.textContent = hide('edgerec-wait', DEC) + hide('edgerec-wait-recs', REC) +
    'html.edgerec-none [data-edgerec-show]:not([data-edgerec-show~=fallback]){display:none!important}';
  (d.head || root).appendChild(style);
  if (page) root.classList.add('edgerec-wait');
  root.classList.add('edgerec-wait-recs');

  // The visitor's id lives on the page's own site (localStorage and a
  // first-party cookie): browsers drop the server's cookie when it is
  // another site's. It goes with every call as visitor=.
  var load = function (k) { try { return localStorage.getItem(k); } catch (e) { return null; } };
  var save = function (k, v) { try { localStorage.setItem(k, v); } catch (e) { /* storage off: the cookie stays */ } };
  var cookie = d.cookie.match('(?:^|; )' + VID + '=([^;]*)');
  var vid = load(VID) || (cookie && decodeURIComponent(cookie[1]));
  var setVisitor = function (v) {
    if (!v) return;
    vid = api.visitor = v;
    save(VID, v);
    d.cookie = VID + '=' + enc(v) + '; path=/; max-age=31536000; SameSite=Lax' + (location.protocol == 'https:' ? '; Secure' : '');
  };

  // get fetches an API answer; with credentials first (the server's
  // cookie is the visitor's id of last resort), without them when the
  // browser refuses (a server started with --cors '*' grants none).
  var get = function (path) {
    return fetch(base + path, { credentials: cred }).then(function (r) {
      return r.ok ? r.json() : Promise.reject(new Error('edgerec: ' + r.status + ' from ' + path));
    }, function (e) {
      if (cred == 'omit') throw e;
      cred = 'omit';
      return get(path);
    });
  };

  // send posts one event to /v1/events with navigator.sendBeacon, which
  // outlives the page (a form's submit navigates away). Keyless beacons
  // are conversions and exposures with a decision_id, and impressions,
  // views and clicks of a recommendation with its placement and rec_id.
  var send = function (ev) {
    ev.visitor = ev.visitor || vid;
    if (!ev.visitor) return false;
    var body = JSON.stringify(ev), url = base + 'events';
    if (navigator.sendBeacon && navigator.sendBeacon(url, body)) return true;
    fetch(url, { method: 'POST', body: body, keepalive: true, mode: 'no-cors' }).catch(function () {});
    return true;
  };

  // The decisions a visitor was shown, by experiment, kept for
  // conversions on later pages: [decision_id, visitor, exposure sent].
  var decisions = function () { try { return JSON.parse(load(DECS)) || {}; } catch (e) { return {}; } };
  var remember = function (dec) {
    var all = decisions(), old = all[dec.experiment];
    var exposed = old && old[0] == dec.decision_id && old[2];
    all[dec.experiment] = [dec.decision_id, dec.visitor, 1];
    save(DECS, JSON.stringify(all));
    // A page with exposure: event counts a visitor of the split when the
    // variant shows (a rule's or the holdout's visitors are not in it).
    if (dec.exposure == 'event' && /^(split|sticky)$/.test(dec.reason) && !exposed) {
      send({ event: 'exposure', decision_id: dec.decision_id, visitor: dec.visitor });
    }
  };

  // A conversion counts for every experiment the visitor was shown, once
  // per visitor and goal (the server counts visitors, not events).
  var convert = function (goal, value) {
    var all = decisions(), n = 0;
    for (var x in all) {
      var ev = { event: 'conversion', decision_id: all[x][0], visitor: all[x][1] };
      if (goal) ev.goal = goal;
      if (value != null && value !== '' && isFinite(value)) ev.value = +value;
      if (send(ev)) n++;
    }
    return n;
  };

  // closed reports whether the parser is past el: a node follows it. Only
  // then its default text is all there to be replaced.
  var closed = function (el) {
    for (; el; el = el.parentNode) if (el.nextSibling) return true;
    return false;
  };
  var apply = function (dec) {
    var p = dec.payload || {}, whole = d.readyState != 'loading';
    each(DEC, function (el) {
      if (el.hasAttribute(DONE) || !(whole || closed(el))) return;
      var k = attr(el, 'data-edgerec');
      if (k && p[k] != null) el.textContent = p[k];
      ['href', 'src'].forEach(function (a) {
        k = attr(el, 'data-edgerec-' + a);
        if (k && p[k] != null) el.setAttribute(a, p[k]);
      });
      (attr(el, 'data-edgerec-attr') || '').split(',').forEach(function (s) {
        var kv = s.split(':'), v = kv[1] && p[kv[1].trim()];
        if (v != null) el.setAttribute(kv[0].trim(), v);
      });
      k = attr(el, 'data-edgerec-show');
      if (k && k.split(/\s+/).indexOf(dec.variant) < 0) el.style.display = 'none';
      el.setAttribute(DONE, '');
    });
  };
  var parsed = function (fn) {
    if (d.readyState != 'loading') fn();
    else d.addEventListener('DOMContentLoaded', fn);
  };

  var api = w.edgerec = {
    visitor: vid,
    decision: null,
    timing: { start: now() },
    convert: convert,
    track: send
  };

  // The decision: applied when it comes within the timeout; else the page
  // keeps its defaults, and a late decision is not applied (no flicker),
  // not counted as an exposure, and not converted for.
  var state = 0; // 0 waiting, 1 applied, 2 defaults shown
  var answer = Promise.resolve(null); // the decision's answer, when the page has one
  api.ready = new Promise(function (done) {
    if (!page) return done(null);
    var show = function () { root.classList.remove('edgerec-wait'); };
    var giveUp = function () {
      if (state) return;
      state = 2;
      root.classList.add('edgerec-none');
      show();
      done(null);
    };
    var timer = setTimeout(giveUp, timeout);
    var q = new URLSearchParams(location.search), o = new URLSearchParams({ page: page });
    if (vid) o.set('visitor', vid);
    if (user) o.set('user', user);
    ['q', 'utm_source', 'utm_medium', 'utm_campaign', 'utm_term', 'utm_content'].forEach(function (k) {
      if (q.get(k)) o.set(k, q.get(k));
    });
    if (d.referrer) o.set('ref', d.referrer);
    answer = get('decide?' + o);
    answer.then(function (dec) {
      setVisitor(dec.visitor);
      if (state) return;
      state = 1;
      clearTimeout(timer);
      api.decision = dec;
      api.timing.decided = now();
      apply(dec);
      if (d.readyState == 'loading') {
        var mo = new MutationObserver(function () { apply(dec); });
        mo.observe(root, { childList: true, subtree: true });
        parsed(function () { mo.disconnect(); apply(dec); show(); });
      } else show();
      remember(dec);
      done(dec);
    }, giveUp);
  });

  // Widgets: <div data-edgerec-placement="home" data-edgerec-k="4"
  // data-edgerec-item="i1" data-edgerec-link="/items/{id}">fallback</div>.
  var render = function (el) {
    if (el.edgerecRendered) return;
    el.edgerecRendered = 1;
    var pl = attr(el, 'data-edgerec-placement'), link = attr(el, 'data-edgerec-link');
    var q = 'recommend?placement=' + enc(pl) + '&visitor=' + enc(vid);
    ['k', 'item', 'category'].forEach(function (k) {
      var v = attr(el, 'data-edgerec-' + k);
      if (v) q += '&' + k + '=' + enc(v);
    });
    get(q).then(function (r) {
      var ul = d.createElement('ul');
      ul.className = 'edgerec-items';
      r.items.forEach(function (it) {
        var li = d.createElement('li'), a = d.createElement(link ? 'a' : 'span');
        li.className = 'edgerec-item';
        li.setAttribute('data-edgerec-id', it.id);
        if (link) a.href = link.replace('{id}', enc(it.id));
        a.textContent = it.title || it.id;
        li.appendChild(a);
        if (it.price != null) {
          var pr = d.createElement('span');
          pr.className = 'edgerec-price';
          pr.textContent = it.price.toLocaleString();
          li.appendChild(pr);
        }
        ul.appendChild(li);
      });
      el.textContent = '';
      el.appendChild(ul);
      el.setAttribute(DONE, '');
      el.addEventListener('click', function (e) {
        var li = e.target.closest('[data-edgerec-id]');
        if (li) send({ event: 'click', item_id: attr(li, 'data-edgerec-id'), placement: pl, rec_id: r.rec_id });
      });
      send({ event: 'impression', placement: pl, rec_id: r.rec_id });
    }, function () { el.setAttribute(DONE, ''); });
  };
  api.render = render;
  setTimeout(function () { root.classList.remove('edgerec-wait-recs'); }, timeout);
  // Widgets wait for the decision's answer, late or not, which may bring
  // a new visitor's id; events need one, so without it the script makes one.
  answer.catch(function () {}).then(function () {
    if (!vid) {
      var b = new Uint8Array(8);
      crypto.getRandomValues(b);
      setVisitor(Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join(''));
    }
    parsed(function () { each(REC, render); });
  });

  // Goals: a form's submit, or a click on another element, with
  // data-edgerec-goal="contact" (and data-edgerec-value) converts.
  var goal = function (el) { convert(attr(el, 'data-edgerec-goal'), attr(el, 'data-edgerec-value')); };
  d.addEventListener('submit', function (e) {
    if (e.target.hasAttribute('data-edgerec-goal')) goal(e.target);
  }, true);
  d.addEventListener('click', function (e) {
    var el = e.target.closest && e.target.closest('[data-edgerec-goal]');
    if (el && el.tagName != 'FORM') goal(el);
  }, true);
})(window, document);
