// EtherLink live view: reads the daemon's status report from /events (Server-Sent
// Events, one report a second) and draws it. Read-only; no framework; uPlot for charts.
'use strict';
(() => {
  const HISTORY = 120; // points kept per chart: two minutes at one report a second
  const $ = (id) => document.getElementById(id);
  const el = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  };
  const bytes = (n) => (n < 1e3 ? `${n} B` : n < 1e6 ? `${(n / 1e3).toFixed(1)} kB` : n < 1e9 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e9).toFixed(2)} GB`);
  const rate = (bps) => (bps < 1e3 ? `${Math.round(bps)} B/s` : bps < 1e6 ? `${(bps / 1e3).toFixed(1)} kB/s` : `${(bps / 1e6).toFixed(2)} MB/s`);
  const ago = (s) => (s === undefined || s === null ? '-' : s < 60 ? `${Math.round(s)}s ago` : s < 3600 ? `${Math.floor(s / 60)}m ${Math.round(s % 60)}s ago` : `${Math.floor(s / 3600)}h ago`);
  const shortKey = (k) => (k ? `${k.slice(0, 10)}…` : '-');

  /** Per series name: the last byte counts and time, and the chart history. */
  const series = new Map();
  const charts = new Map();
  let network = '';

  function track(name, rx, tx, t) {
    let s = series.get(name);
    if (s === undefined) series.set(name, (s = { rx, tx, t, times: [], rxRate: [], txRate: [], now: { rx: 0, tx: 0 } }));
    const dt = (t - s.t) / 1000;
    if (dt > 0) {
      s.now = { rx: Math.max(0, (rx - s.rx) / dt), tx: Math.max(0, (tx - s.tx) / dt) };
      s.times.push(t / 1000);
      s.rxRate.push(s.now.rx);
      s.txRate.push(s.now.tx);
      if (s.times.length > HISTORY) for (const a of [s.times, s.rxRate, s.txRate]) a.shift();
    }
    Object.assign(s, { rx, tx, t });
    return s;
  }

  function chartWidth(box) {
    return Math.max(200, Math.floor(box.getBoundingClientRect().width || 280));
  }

  /** A chart's time axis: the last HISTORY seconds up to its newest point (times ascend), or up to now. */
  function timeRange(xs) {
    const hi = xs.length > 0 ? xs[xs.length - 1] : Date.now() / 1000;
    return [hi - HISTORY, hi];
  }

  function drawCharts(names) {
    const box = $('charts');
    for (const [name, c] of charts) {
      if (!names.includes(name)) {
        c.plot.destroy();
        c.box.remove();
        charts.delete(name);
      }
    }
    for (const name of names) {
      const s = series.get(name);
      if (s === undefined || typeof uPlot === 'undefined') continue;
      let c = charts.get(name);
      if (c === undefined) {
        const wrap = el('div', undefined, 'chart');
        wrap.dataset.port = name;
        wrap.append(el('h3', name));
        wrap.append(el('div', '', 'now'));
        const area = el('div');
        wrap.append(area);
        box.append(wrap);
        const opts = {
          width: chartWidth(wrap),
          height: 140,
          legend: { show: false },
          cursor: { show: false },
          // The last HISTORY seconds up to the newest point (or now): not uPlot's max, which for a single
          // point is 1000 days after it (the chart then showed a date in 2029 and the point off the left edge).
          scales: {
            x: {
              time: true,
              range: (u) => {
                const r = timeRange(u.data[0]);
                // Where the time axis ends (unix s), as uPlot draws it: what a test can check of a canvas.
                wrap.dataset.until = String(r[1]);
                return r;
              },
            },
            y: { range: (u, min, max) => [0, Math.max(1024, max * 1.1)] },
          },
          axes: [{ space: 60 }, { values: (u, v) => v.map((x) => rate(x)), size: 85 }],
          series: [{}, { label: 'rx', stroke: '#1565c0', width: 1.5, fill: 'rgba(21,101,192,.08)' }, { label: 'tx', stroke: '#c62828', width: 1.5 }],
        };
        c = { box: wrap, plot: new uPlot(opts, [s.times, s.rxRate, s.txRate], area) };
        charts.set(name, c);
      } else c.plot.setData([s.times, s.rxRate, s.txRate]);
      c.box.dataset.points = String(s.times.length);
      c.box.querySelector('.now').textContent = `rx ${rate(s.now.rx)} (blue), tx ${rate(s.now.tx)} (red)`;
    }
  }

  window.addEventListener('resize', () => {
    for (const c of charts.values()) c.plot.setSize({ width: chartWidth(c.box), height: 140 });
  });

  function setRows(tbody, rows, key) {
    tbody.replaceChildren(...rows);
    tbody.dataset.count = String(rows.length);
    if (key) tbody.dataset.keys = rows.map((r) => r.dataset[key]).join(',');
  }

  function head(table, cols) {
    const tr = el('tr');
    for (const c of cols) tr.append(typeof c === 'string' ? el('th', c) : el('th', c[0], c[1]));
    table.tHead.replaceChildren(tr);
  }

  function row(cells, data) {
    const tr = el('tr');
    for (const [k, v] of Object.entries(data ?? {})) tr.dataset[k] = v;
    for (const c of cells) {
      const td = Array.isArray(c) ? el('td', c[0], c[1]) : el('td', c);
      if (Array.isArray(c) && c[2]) td.title = c[2];
      tr.append(td);
    }
    return tr;
  }

  function dl(target, pairs) {
    const out = [];
    for (const [k, v] of pairs) out.push(el('dt', k), el('dd', v));
    target.replaceChildren(...out);
  }

  function networks(r) {
    const names = (r.networks ?? []).map((n) => n.name);
    const picker = $('network-picker');
    picker.hidden = names.length < 2;
    const sel = $('network');
    const want = ['', ...names].join('\n');
    if (sel.dataset.names !== want) {
      sel.dataset.names = want;
      sel.replaceChildren(el('option', 'all'), ...names.map((n) => el('option', n)));
      sel.options[0].value = '';
      sel.value = names.includes(network) ? network : '';
    }
    return names;
  }

  function showSwitch(r) {
    networks(r);
    const inNet = (x) => network === '' || x.network === network;
    const multi = (r.networks ?? []).length > 1;
    $('title').textContent = `vswitch ${r.publicKey ? shortKey(r.publicKey) : ''}`;
    const t = Date.parse(r.time);
    const ports = r.ports.filter(inNet);
    // Which peers each port reaches direct or through this switch, as the ports report it.
    const paths = new Map();
    for (const x of r.pairs ?? []) {
      if (!inNet(x)) continue;
      for (const [me, peer] of [[x.a, x.b], [x.b, x.a]]) {
        if (!paths.has(me)) paths.set(me, []);
        paths.get(me).push(`${peer} ${x.path}`);
      }
    }
    head($('ports'), ['Name', ...(multi ? ['Network'] : []), ['Public key', 'wide'], 'Underlay', 'Transport', 'Paths', 'Handshake', 'Link', 'rx', 'tx', 'MACs']);
    const rows = ports.map((p) => {
      // All of a member's traffic: switched, relayed end to end, and what it reports it sent and received direct.
      const d = p.directTraffic;
      const rx = p.counters.rxBytes + (p.relayed ? p.relayed.fromBytes : 0) + (d ? d.txBytes : 0);
      const tx = p.counters.txBytes + (p.relayed ? p.relayed.toBytes : 0) + (d ? d.rxBytes : 0);
      const s = track(p.name, rx, tx, t);
      const tr = row(
        [
          [p.name, 'name'],
          ...(multi ? [p.network] : []),
          [shortKey(p.publicKey), 'key wide', p.publicKey ?? ''],
          p.address,
          p.transport ?? (p.address === 'local' ? 'local' : '-'),
          (paths.get(p.name) ?? []).join(', ') || '-',
          p.lastHandshakeS !== undefined ? ago(p.lastHandshakeS) : '-',
          [p.blocked ? 'blocked' : p.linkUp ? 'up' : 'down', p.blocked ? 'blocked' : p.linkUp ? '' : 'down', p.blocked ? p.blocked.reason : ''],
          [rate(s.now.rx), 'num rx'],
          [rate(s.now.tx), 'num tx'],
          [p.macs.length, 'num'],
        ],
        { port: p.name, rxBps: String(s.now.rx), txBps: String(s.now.tx) },
      );
      return tr;
    });
    setRows($('ports').tBodies[0], rows, 'port');
    $('ports-title').textContent = `Ports (${ports.length})`;
    drawCharts(ports.map((p) => p.name));

    const q = $('mac-filter').value.trim().toLowerCase();
    const macs = r.macTable.filter(inNet).filter((m) => q === '' || `${m.mac} ${m.vlan} ${m.portName} ${m.port} ${m.network}`.toLowerCase().includes(q));
    setRows($('macs').tBodies[0], macs.map((m) => row([[m.mac, 'mac'], m.vlan || '-', m.portName, m.static ? 'static' : `${m.ageSeconds}s`], { mac: m.mac })), 'mac');

    const net = network !== '' ? (r.networks ?? []).find((n) => n.name === network) : undefined;
    const totals = net ? net.totals : r.totals;
    const mt = net ? net.macTableCounters : r.macTableCounters;
    const d = totals.drops;
    dl($('counters'), [
      ['frames in', `${totals.rxFrames} (${bytes(totals.rxBytes)})`],
      ['frames out', `${totals.txFrames} (${bytes(totals.txBytes)})`],
      ['flooded', totals.flooded],
      ['drops: runt', d.runt], ['drops: oversize', d.oversize], ['drops: bad source', d.badSource], ['drops: same port', d.samePort],
      ['drops: reentrant', d.reentrant], ['drops: VLAN', d.vlan], ['drops: storm control', d.storm], ['drops: blocked port', d.blocked],
      ['MAC moves', mt.moves], ['MAC moves refused', mt.moveDenied], ['MACs not learned (limits)', mt.tableFull + mt.portLimit],
    ]);
    dl($('summary'), [
      ['mode', r.mode === 'secure' ? `secure (${r.cipher})` : 'insecure (plaintext)'],
      ['switch key', r.publicKey],
      ['UDP', (r.udpPorts ?? []).join(', ') || '-'],
      ['networks', (r.networks ?? []).map((n) => `${n.name} (${n.members})`).join(', ')],
      ['pairs', `${(r.pairs ?? []).length}: ${(r.pairs ?? []).filter((x) => x.path === 'direct').length} direct`],
      ['report', r.time],
    ]);
    showEvents((r.events ?? []).filter((e) => network === '' || e.network === undefined || e.network === network));
  }

  function showPort(r) {
    $('network-picker').hidden = true;
    $('title').textContent = `vport ${r.device}`;
    const t = Date.parse(r.time);
    const s = track(r.device, r.tap.rxBytes, r.tap.txBytes, t);
    head($('ports'), ['Peer', ['Public key', 'wide'], 'Path', 'Endpoint', 'RTT', 'State', 'Handshake', 'tx direct/relay', 'rx direct/relay', 'MACs']);
    const rows = r.peers.map((p) =>
      row(
        [
          [p.name, 'name'],
          [shortKey(p.publicKey), 'key wide', p.publicKey],
          [p.path, p.path === 'direct' ? 'direct' : 'relayed', p.reason ?? ''],
          p.endpoint ?? '-',
          p.rttMs !== undefined ? `${p.rttMs.toFixed(2)} ms` : '-',
          p.stale ? `${p.state} (stale)` : p.state,
          ago(p.lastHandshakeS),
          `${bytes(p.txDirectBytes)} / ${bytes(p.txRelayBytes)}`,
          `${bytes(p.rxDirectBytes)} / ${bytes(p.rxRelayBytes)}`,
          [p.macs, 'num'],
        ],
        { port: p.name },
      ),
    );
    setRows($('ports').tBodies[0], rows, 'port');
    $('ports-title').textContent = `Peers (${r.peers.length})`;
    drawCharts([r.device]);
    const q = $('mac-filter').value.trim().toLowerCase();
    const macs = [[r.mac, 'this device'], ...(r.macs ?? []).map((m) => [m, 'end to end'])].filter(([m, w]) => q === '' || `${m} ${w}`.toLowerCase().includes(q));
    setRows($('macs').tBodies[0], macs.map(([m, w]) => row([[m, 'mac'], '-', w, '-'], { mac: m })), 'mac');
    const c = r.counters ?? {};
    dl($('counters'), Object.entries(c).filter(([, v]) => v > 0).map(([k, v]) => [k, v]).concat([['device dropped', r.tap.txDropped]]));
    dl($('summary'), [
      ['device', `${r.device} ${r.mac}${r.linkUp ? '' : ' (link down)'}`],
      ['state', `${r.state}, session ${r.session}`],
      ['switch', `${r.switch} over ${r.transport.current}`],
      ['public key', r.publicKey],
      ['network', `${r.network || '-'}, VLAN ${r.vlan || '-'}`],
      ['direct paths', `${r.direct ? 'on' : 'off'}, NAT ${r.nat}`],
      ['rtt', r.rttMs !== undefined ? `${r.rttMs.toFixed(2)} ms` : '-'],
      ['report', r.time],
    ]);
    showEvents(r.events ?? []);
  }

  function showEvents(events) {
    const items = events.slice(-200).reverse().map((e) => {
      const li = el('li');
      li.dataset.kind = e.kind;
      li.append(el('time', new Date(e.time).toLocaleTimeString()), el('span', e.kind, 'kind'), el('span', e.text));
      return li;
    });
    $('events').replaceChildren(...(items.length > 0 ? items : [el('li', 'none yet')]));
  }

  let last;
  function show(r) {
    last = r;
    if (r.kind === 'vswitch') showSwitch(r);
    else showPort(r);
    document.body.dataset.updated = r.time;
  }

  $('network').addEventListener('change', (e) => {
    network = e.target.value;
    if (last) show(last);
  });
  $('mac-filter').addEventListener('input', () => last && show(last));

  const source = new EventSource('events');
  source.addEventListener('report', (e) => {
    $('state').textContent = 'live';
    $('state').className = 'state';
    show(JSON.parse(e.data));
  });
  source.addEventListener('problem', (e) => {
    $('state').textContent = `daemon: ${JSON.parse(e.data)}`;
  });
  source.addEventListener('error', () => {
    $('state').textContent = 'disconnected: retrying…';
    $('state').className = 'state down';
  });
})();
