// Portcullis portal: the WebAuthn ceremonies (the only part of the portal that needs a script).
(function () {
  "use strict";
  var status = document.getElementById("webauthn-status") || document.getElementById("passkey-status");
  function say(text, failed) {
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("failed", !!failed);
  }
  function supported() {
    return window.PublicKeyCredential &&
      typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function" &&
      typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function";
  }
  function post(url, csrf, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body || {})
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) throw new Error(j.error || "The server refused the request.");
        return j;
      });
    });
  }
  function withRD(url, rd) {
    return rd ? url + "?rd=" + encodeURIComponent(rd) : url;
  }
  function failed(button, err) {
    button.disabled = false;
    var msg = err && err.name === "NotAllowedError" ? "The request was cancelled or timed out. Try again." : (err && err.message) || "Something went wrong. Try again.";
    say(msg, true);
  }
  var login = document.getElementById("webauthn-login");
  if (login) {
    if (!supported()) {
      login.disabled = true;
      say("This browser cannot use security keys here.", true);
    }
    login.addEventListener("click", function () {
      var d = login.dataset;
      login.disabled = true;
      say("Touch your security key or confirm on your device…");
      post(d.options, d.csrf).then(function (opts) {
        return navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(opts) });
      }).then(function (cred) {
        return post(withRD(d.verify, d.rd), d.csrf, cred.toJSON());
      }).then(function (res) {
        say("Verified.");
        window.location.assign(res.redirect);
      }).catch(function (err) { failed(login, err); });
    });
  }
  // Passkey sign-in: the button, and the browser's autofill (conditional mediation) offering
  // passkeys in the username field, when it can.
  var pk = document.getElementById("passkey-login");
  if (pk && supported()) {
    document.getElementById("passkey-block").hidden = false;
    var pd = pk.dataset;
    var pending = null; // the AbortController of the autofill's request
    var finish = function (cred) {
      var remember = document.querySelector('input[name="remember_me"]');
      pk.disabled = true;
      say("Checking your passkey…");
      return post(withRD(pd.verify, pd.rd), pd.csrf, { credential: cred.toJSON(), remember_me: !!(remember && remember.checked) }).then(function (res) {
        say("Signed in.");
        window.location.assign(res.redirect);
      });
    };
    var autofill = function () {
      if (typeof PublicKeyCredential.isConditionalMediationAvailable !== "function") return;
      PublicKeyCredential.isConditionalMediationAvailable().then(function (ok) {
        if (!ok) return;
        var ctl = new AbortController();
        pending = ctl;
        return post(pd.options, pd.csrf).then(function (opts) {
          return navigator.credentials.get({ mediation: "conditional", publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(opts), signal: ctl.signal });
        }).then(function (cred) {
          pending = null;
          return finish(cred);
        }).catch(function (err) {
          if (ctl.signal.aborted) return; // the button took over
          pending = null;
          failed(pk, err);
        });
      }).catch(function () {});
    };
    pk.addEventListener("click", function () {
      if (pending) {
        pending.abort();
        pending = null;
      }
      pk.disabled = true;
      say("Choose your passkey, then confirm with your fingerprint, face or PIN…");
      post(pd.options, pd.csrf).then(function (opts) {
        return navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(opts) });
      }).then(finish).catch(function (err) { failed(pk, err); });
    });
    autofill();
  }
  var reg = document.getElementById("webauthn-register");
  if (reg) {
    if (!supported()) {
      reg.disabled = true;
      say("This browser cannot register security keys.", true);
    }
    reg.addEventListener("click", function () {
      var d = reg.dataset;
      var name = document.getElementById("key-name").value;
      reg.disabled = true;
      say("Touch your security key or confirm on your device…");
      post(d.options, d.csrf).then(function (opts) {
        return navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(opts) });
      }).then(function (cred) {
        return post(withRD(d.verify, d.rd), d.csrf, { name: name, credential: cred.toJSON() });
      }).then(function (res) {
        say("Registered.");
        window.location.assign(res.redirect);
      }).catch(function (err) { failed(reg, err); });
    });
  }
})();
