#!/usr/bin/env python3
"""Real Tryton 8.2 server fixture for the Arrears Tryton connector tests.

Subcommands (all print one JSON document on stdout, logs go to stderr):

  setup --dir DIR                 create config + SQLite DB "arrears_test",
                                  company, chart, fiscal year 2026, payment
                                  term, 2 parties, 3 posted customer invoices
  serve --dir DIR                 exec the trytond server (foreground)
  pay   --dir DIR --invoice NUMBER [--amount X] [--date YYYY-MM-DD]
                                  pay an invoice with the invoice "pay" wizard
                                  (full, or partial when X < amount to pay)
  bulk  --dir DIR --lines N --parties P
                                  a ledger for benchmarks: P parties (each with
                                  a procedure and an invoice address) and N
                                  posted receivable lines, in moves of 100
  settle --dir DIR --count K      reconcile K open receivable lines with
                                  payment moves (what an incremental sync sees)
  party --dir DIR --name NAME [--email E] [--drop-addresses]
                                  change a party the way a user does in its
                                  form (one write of the party; addresses are
                                  archived)
  unblock --dir DIR --invoice NUMBER
                                  delete the blocked dunning of an invoice's
                                  line (a deletion leaves no timestamp)
  notes --dir DIR                 the notes on parties (what Arrears wrote
                                  back), over JSON-RPC
  check --dir DIR                 JSON-RPC over HTTP (urllib only) against the
                                  running server, the way the Rust connector
                                  talks to it

Run it with the python of the venv where requirements.txt is installed.
"""
import argparse
import base64
import configparser
import contextlib
import datetime as dt
import gzip
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal

DB_NAME = 'arrears_test'
USER = 'admin'
PASSWORD = 'admin'
CONF_NAME = 'trytond.conf'
STATE_NAME = 'fixture.json'

# (party, invoice date, amount); payment term is 30 days net.
INVOICES = [
    ('Alpha GmbH', dt.date(2026, 9, 1), Decimal('100.00')),
    ('Alpha GmbH', dt.date(2026, 9, 15), Decimal('250.00')),
    ('Alpha GmbH', dt.date(2026, 9, 20), Decimal('40.00')),
    ('Beta AG', dt.date(2026, 10, 1), Decimal('80.00')),
    ('Gamma SA', dt.date(2026, 10, 5), Decimal('60.00')),
]
# What each party is in Tryton: the parts the connector reads besides lines.
# Alpha: dunned, German, two addresses (the invoice one is second), a phone.
# Beta: dunned, no address (its default address stays empty), no e-mail.
# Gamma: no dunning procedure (Tryton does not dun it), an e-mail.
PARTIES = {
    'Alpha GmbH': {
        'procedure': True, 'lang': 'de', 'phone': '+49 30 1234567',
        'addresses': [
            {'street': 'Lagerweg 9', 'postal_code': '20095',
                'city': 'Hamburg', 'invoice': False},
            {'street': 'Hauptstraße 1', 'postal_code': '10115',
                'city': 'Berlin', 'invoice': True},
        ]},
    'Beta AG': {'procedure': True, 'addresses': []},
    'Gamma SA': {'procedure': False, 'email': 'gamma@example.test',
        'addresses': []},
}
# Alpha's third invoice's dunning is blocked in Tryton (a dunning block).
BLOCKED = 'INV/2026/0003'
DUNNING_PROCEDURE = 'Standard'

# Fields the connector reads from account.move.line.
LINE_FIELDS = [
    'id', 'party', 'party.rec_name', 'party.code', 'debit', 'credit',
    'maturity_date', 'move.number', 'move.date', 'move_origin',
    'move_origin.rec_name', 'move_origin.number', 'reconciliation',
    'write_date', 'create_date', 'company', 'currency',
    'amount_second_currency', 'second_currency',
]
# Extra fields probed one by one by "check" (invoice number, currency code,
# reconciliation details).
PROBE_FIELDS = [
    'move_origin.number', 'move_origin.invoice_date',
    'move_origin.reference', 'move.origin', 'move.origin.rec_name',
    'move.origin.number', 'currency.code', 'company.currency.code',
    'company.rec_name', 'second_currency.code', 'reconciliation.rec_name',
    'reconciliation.create_date', 'reconciliation.date',
    'reconciliation.write_date', 'amount', 'amount_currency', 'payment_amount',
    'reconciled', 'description', 'move_description_used', 'account.code',
]
RECEIVABLE_DOMAIN = [
    ['account.type.receivable', '=', True],
    ['move.state', '=', 'posted'],
    ['party', '!=', None],
]

log = logging.getLogger('fixture')


def emit(obj):
    json.dump(obj, sys.stdout, indent=2, default=_json_default)
    sys.stdout.write('\n')
    sys.stdout.flush()


def _json_default(o):
    if isinstance(o, Decimal):
        return str(o)
    if isinstance(o, (dt.date, dt.datetime)):
        return o.isoformat()
    raise TypeError(repr(o))


def paths(directory):
    directory = os.path.abspath(directory)
    return (directory, os.path.join(directory, CONF_NAME),
        os.path.join(directory, STATE_NAME))


def read_port(conf):
    cp = configparser.ConfigParser()
    cp.read(conf)
    return int(cp.get('web', 'listen').rsplit(':', 1)[1])


def free_port():
    with contextlib.closing(
            socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def venv_script(name):
    path = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.exists(path):
        return path
    return name


def proteus_connect(conf):
    """Open proteus on the fixture database, in this process."""
    os.environ['TRYTOND_CONFIG'] = conf
    # proteus.set_trytond(): with a URI without path it takes DB_NAME.
    os.environ['TRYTOND_DATABASE_URI'] = 'sqlite://'
    os.environ['DB_NAME'] = DB_NAME
    from proteus import config as pconfig
    cfg = pconfig.set_trytond(user=USER, config_file=conf)
    # e.g. "payment date in the past" on posting back-dated invoices
    cfg.skip_warning = True
    return cfg


# ---------------------------------------------------------------- setup
def cmd_setup(args):
    timings = {}
    t0 = t = time.monotonic()

    def lap(name):
        nonlocal t
        now = time.monotonic()
        timings[name] = round(now - t, 2)
        t = now

    directory, conf, state_path = paths(args.dir)
    os.makedirs(directory, exist_ok=True)
    db_file = os.path.join(directory, DB_NAME + '.sqlite')
    for f in (db_file, db_file + '-wal', db_file + '-shm', state_path):
        if os.path.exists(f):
            os.remove(f)
    port = args.port or free_port()
    with open(conf, 'w') as fh:
        fh.write(
            '[database]\n'
            'uri = sqlite://\n'
            f'path = {directory}\n'
            '\n'
            '[web]\n'
            f'listen = 127.0.0.1:{port}\n'
            '\n'
            '[session]\n'
            # keep the login rate limiter out of the way of tests
            'max_attempt = 100\n')
    passfile = os.path.join(directory, 'admin.pass')
    with open(passfile, 'w') as fh:
        fh.write(PASSWORD + '\n')
    # trytond's sqlite backend wants the file to exist
    open(db_file, 'wb').close()

    env = dict(os.environ, TRYTONPASSFILE=passfile, TRYTOND_CONFIG=conf)
    env.pop('TRYTOND_DATABASE_URI', None)
    cmd = [venv_script('trytond-admin'), '-c', conf, '-d', DB_NAME,
        '-u', 'account_invoice', 'account_dunning', '--activate-dependencies']
    log.info('running %s', ' '.join(cmd))
    # it asks for the admin e-mail on stdin: answer with an empty line
    subprocess.run(cmd, env=env, check=True, input=b'\n',
        stdout=sys.stderr)
    os.remove(passfile)
    lap('init_db_and_activate_modules')

    cfg = proteus_connect(conf)
    from proteus import Model
    from trytond.modules.account.tests.tools import (
        create_chart, create_fiscalyear, get_accounts)
    from trytond.modules.account_invoice.tests.tools import (
        set_fiscalyear_invoice_sequences)
    from trytond.modules.company.tests.tools import (
        create_company, get_company)
    lap('proteus_connect')

    Party = Model.get('party.party')
    company_party = Party(name='Arrears Test Company')
    company_party.save()
    create_company(party=company_party, currency='EUR', config=cfg)
    company = get_company()
    create_chart(company)
    fiscalyear = create_fiscalyear(
        company, today=(dt.date(2026, 1, 1), dt.date(2026, 12, 31)))
    # distinct numbering so that invoice and move numbers can't be confused
    fiscalyear.move_sequence.prefix = 'MOVE/2026/'
    fiscalyear.move_sequence.padding = 4
    fiscalyear.move_sequence.save()
    fiscalyear = set_fiscalyear_invoice_sequences(fiscalyear)
    invoice_seq = fiscalyear.invoice_sequences[0].out_invoice_sequence
    invoice_seq.prefix = 'INV/2026/'
    invoice_seq.padding = 4
    invoice_seq.save()
    fiscalyear.save()
    fiscalyear.click('create_period')
    accounts = get_accounts(company)
    revenue = accounts['revenue']

    Journal = Model.get('account.journal')
    PaymentMethod = Model.get('account.invoice.payment.method')
    journal_cash, = Journal.find([('type', '=', 'cash')], limit=1)
    payment_method = PaymentMethod(name='Cash')
    payment_method.journal = journal_cash
    payment_method.credit_account = accounts['cash']
    payment_method.debit_account = accounts['cash']
    payment_method.save()

    PaymentTerm = Model.get('account.invoice.payment_term')
    payment_term = PaymentTerm(name='30 days net')
    line = payment_term.lines.new(type='remainder')
    line.relativedeltas.new(days=30)
    payment_term.save()
    lap('company_chart_fiscalyear_payment_term')

    Procedure = Model.get('account.dunning.procedure')
    procedure = Procedure(name=DUNNING_PROCEDURE)
    for days in (5, 20):
        level = procedure.levels.new()
        level.overdue = dt.timedelta(days)
    procedure.save()
    Country = Model.get('country.country')
    germany = Country(name='Germany', code='DE')
    germany.save()
    Lang = Model.get('ir.lang')
    parties = {}
    for name in dict.fromkeys(p for p, _, _ in INVOICES):
        spec = PARTIES[name]
        party = Party(name=name)
        party.dunning_procedure = procedure if spec['procedure'] else None
        if spec.get('lang'):
            party.lang, = Lang.find([('code', '=', spec['lang'])])
        if spec['addresses']:
            party.addresses.pop()
        for a in spec['addresses']:
            party.addresses.new(street_unstructured=a['street'],
                postal_code=a['postal_code'], city=a['city'],
                country=germany, invoice=a['invoice'])
        for kind in ('phone', 'email'):
            if spec.get(kind):
                party.contact_mechanisms.new(type=kind, value=spec[kind])
        party.save()
        parties[name] = party

    Invoice = Model.get('account.invoice')
    result = []
    for party_name, invoice_date, amount in INVOICES:
        invoice = Invoice(type='out')
        invoice.party = parties[party_name]
        invoice.payment_term = payment_term
        invoice.invoice_date = invoice_date
        line = invoice.lines.new()
        line.account = revenue
        line.description = 'Services'
        line.quantity = 1
        line.unit_price = amount
        invoice.save()
        invoice.click('post')
        assert invoice.state == 'posted', invoice.state
        move_line, = invoice.lines_to_pay
        result.append({
                'id': invoice.id,
                'number': invoice.number,
                'party': party_name,
                'party_id': invoice.party.id,
                'party_code': invoice.party.code,
                'invoice_date': invoice_date,
                'total': invoice.total_amount,
                'due': move_line.maturity_date,
                'move_number': invoice.move.number,
                'move_line_id': move_line.id,
                })
    # A blocked dunning on one line: Tryton's dunning block.
    Dunning = Model.get('account.dunning')
    blocked, = [r for r in result if r['number'] == BLOCKED]
    dunning = Dunning(line=blocked['move_line_id'], procedure=procedure,
        level=procedure.levels[0], blocked=True)
    dunning.save()
    lap('parties_and_invoices')
    timings['total'] = round(time.monotonic() - t0, 2)

    out = {
        'config': conf,
        'database': DB_NAME,
        'port': port,
        'url': f'http://127.0.0.1:{port}/{DB_NAME}/rpc/',
        'user': USER,
        'password': PASSWORD,
        'company': {'id': company.id, 'name': company.party.name,
            'currency': company.currency.code},
        'payment_term': payment_term.name,
        'invoices': result,
        'parties': PARTIES,
        'blocked': BLOCKED,
        'dunning_procedure': DUNNING_PROCEDURE,
        'timings_s': timings,
        }
    with open(state_path, 'w') as fh:
        json.dump(out, fh, indent=2, default=_json_default)
    emit(out)


# ---------------------------------------------------------------- serve
def cmd_serve(args):
    directory, conf, _ = paths(args.dir)
    if not os.path.exists(conf):
        sys.exit(f'no {conf}: run "setup" first')
    port = read_port(conf)
    cmd = [venv_script('trytond'), '-c', conf, '-d', DB_NAME]
    emit({'port': port, 'pid': os.getpid(), 'command': cmd,
            'url': f'http://127.0.0.1:{port}/{DB_NAME}/rpc/'})
    env = dict(os.environ, TRYTOND_CONFIG=conf)
    env.pop('TRYTOND_DATABASE_URI', None)
    sys.stderr.flush()
    os.execve(cmd[0] if os.path.isabs(cmd[0]) else _which(cmd[0]), cmd, env)


def _which(name):
    import shutil
    path = shutil.which(name)
    if not path:
        sys.exit(f'{name} not found')
    return path


# ---------------------------------------------------------------- pay
def _line_state(MoveLine, ids):
    out = []
    for ml in [MoveLine(i) for i in ids]:
        out.append({
                'id': ml.id,
                'account': ml.account.code,
                'debit': ml.debit,
                'credit': ml.credit,
                'party': ml.party.rec_name if ml.party else None,
                'reconciliation': (ml.reconciliation.id
                    if ml.reconciliation else None),
                'write_date': ml.write_date,
                'create_date': ml.create_date,
                })
    return out


def cmd_pay(args):
    t0 = time.monotonic()
    directory, conf, _ = paths(args.dir)
    cfg = proteus_connect(conf)
    from proteus import Model
    Invoice = Model.get('account.invoice')
    MoveLine = Model.get('account.move.line')
    PaymentMethod = Model.get('account.invoice.payment.method')

    invoice, = Invoice.find([('number', '=', args.invoice)])
    receivable_ids = [l.id for l in invoice.lines_to_pay]
    before = {
        'state': invoice.state,
        'amount_to_pay': invoice.amount_to_pay,
        'lines_to_pay': _line_state(MoveLine, receivable_ids),
        }
    amount = (Decimal(args.amount) if args.amount is not None
        else invoice.amount_to_pay)
    amount = amount.quantize(invoice.currency.rounding)
    payment_method, = PaymentMethod.find([('name', '=', 'Cash')], limit=1)
    existing_payment_ids = {l.id for l in invoice.payment_lines}

    pay = invoice.click('pay')
    pay.form.amount = amount
    pay.form.payment_method = payment_method
    if args.date:
        pay.form.date = dt.date.fromisoformat(args.date)
    pay_date = pay.form.date
    pay.execute('choice')
    kind = 'full'
    if pay.state != 'end':
        # amount does not match the lines to pay: "ask" step
        if amount < invoice.amount_to_pay:
            pay.form.type = 'partial'
            kind = 'partial'
        else:
            pay.form.type = 'overpayment'
            kind = 'overpayment'
        pay.execute('pay')
    invoice.reload()
    payment_ids = [l.id for l in invoice.payment_lines
        if l.id not in existing_payment_ids]
    after = {
        'state': invoice.state,
        'amount_to_pay': invoice.amount_to_pay,
        'reconciled': invoice.reconciled,
        'lines_to_pay': _line_state(MoveLine, receivable_ids),
        'new_payment_lines': _line_state(MoveLine, payment_ids),
        }
    emit({
            'invoice': invoice.number,
            'party': invoice.party.rec_name,
            'paid_amount': amount,
            'date': pay_date,
            'kind': kind,
            'before': before,
            'after': after,
            'elapsed_s': round(time.monotonic() - t0, 2),
            })


# ---------------------------------------------------------------- bulk
def _in_transaction(conf):
    """A runner of functions in trytond transactions of this process, for writes
    too large for proteus. Tryton asks for a table lock by failing the
    transaction (posting numbers moves); it is started again with the lock, as
    its own dispatcher does."""
    proteus_connect(conf)
    from trytond.pool import Pool
    from trytond.transaction import Transaction, TransactionError

    def run(fn):
        extras = {}
        while True:
            try:
                with Transaction().start(DB_NAME, 1, context={'company': 1},
                        **extras) as tx:
                    out = fn(Pool())
                    tx.commit()
                    return out
            except TransactionError as e:
                e.fix(extras)
    return run


def cmd_bulk(args):
    """Posted receivable lines straight through trytond, a move of 100 lines
    per transaction: proteus posts ≈ 14 invoices/s, this thousands of lines/s."""
    t0 = time.monotonic()
    directory, conf, _ = paths(args.dir)
    run = _in_transaction(conf)

    def make_parties(pool):
        procedure, = pool.get('account.dunning.procedure').search(
            [('name', '=', DUNNING_PROCEDURE)])
        germany, = pool.get('country.country').search([('code', '=', 'DE')])
        return [p.id for p in pool.get('party.party').create([{
                        'name': f'Bulk Customer {i:05d}',
                        'dunning_procedure': procedure.id,
                        'addresses': [('create', [{
                                        'street_unstructured': f'Weg {i}',
                                        'postal_code': f'{10000 + i}',
                                        'city': 'Berlin',
                                        'country': germany.id,
                                        'invoice': True}])],
                        } for i in range(args.parties)])]
    parties = run(make_parties)

    def make_move(made, n):
        def fn(pool):
            Account = pool.get('account.account')
            Move = pool.get('account.move')
            journal, = pool.get('account.journal').search(
                [('type', '=', 'revenue')], limit=1)
            receivable, = Account.search([('type.receivable', '=', True),
                    ('closed', '!=', True)], limit=1)
            revenue, = Account.search([('type.revenue', '=', True),
                    ('closed', '!=', True)], limit=1)
            date = dt.date(2026, 1, 1) + dt.timedelta(days=(made // 100) % 300)
            period = pool.get('account.period').find(1, date)
            amounts = [Decimal(10 + (made + k) % 990) + Decimal('0.50')
                for k in range(n)]
            lines = [{
                    'account': receivable.id,
                    'party': parties[(made + k) % len(parties)],
                    'debit': a, 'credit': Decimal(0),
                    'maturity_date': date + dt.timedelta(days=30),
                    } for k, a in enumerate(amounts)]
            lines.append({'account': revenue.id, 'debit': Decimal(0),
                    'credit': sum(amounts)})
            move, = Move.create([{'journal': journal.id, 'period': period,
                        'date': date, 'lines': [('create', lines)]}])
            Move.post([move])
        return fn

    made = 0
    while made < args.lines:
        n = min(100, args.lines - made)
        run(make_move(made, n))
        made += n
    emit({'lines': made, 'parties': args.parties,
            'elapsed_s': round(time.monotonic() - t0, 2)})


def cmd_settle(args):
    """Pays K open receivable lines in full (newest first), each with a payment
    move of its own, reconciled: what booking a bank statement does."""
    t0 = time.monotonic()
    directory, conf, _ = paths(args.dir)
    run = _in_transaction(conf)

    def fn(pool):
        Line = pool.get('account.move.line')
        Move = pool.get('account.move')
        journal, = pool.get('account.journal').search(
            [('type', '=', 'cash')], limit=1)
        cash, = pool.get('account.account').search(
            [('code', '=', '1.1.1')], limit=1)
        open_lines = Line.search([
                ('account.type.receivable', '=', True),
                ('reconciliation', '=', None), ('debit', '>', 0),
                ('move.state', '=', 'posted'), ('party', '!=', None)],
            order=[('id', 'DESC')], limit=args.count)
        date = dt.date(2026, 11, 20)
        period = pool.get('account.period').find(1, date)
        for line in open_lines:
            move, = Move.create([{'journal': journal.id, 'period': period,
                        'date': date, 'lines': [('create', [
                                    {'account': cash.id, 'debit': line.debit,
                                        'credit': Decimal(0)},
                                    {'account': line.account.id,
                                        'party': line.party.id,
                                        'debit': Decimal(0),
                                        'credit': line.debit}])]}])
            Move.post([move])
            pay, = [l for l in move.lines if l.account == line.account]
            Line.reconcile([line, pay])
        return [l.id for l in open_lines]
    settled = run(fn)
    emit({'settled': settled, 'elapsed_s': round(time.monotonic() - t0, 2)})


# ---------------------------------------------------------------- check
class RpcError(Exception):
    pass


class Client:
    """Minimal Tryton JSON-RPC client, standard library only."""

    def __init__(self, port, db=DB_NAME):
        self.url = f'http://127.0.0.1:{port}/{db}/rpc/'
        self.auth = None
        self.n = 0

    def call(self, method, params):
        self.n += 1
        body = json.dumps({'id': self.n, 'method': method,
                'params': params}).encode()
        req = urllib.request.Request(self.url, data=body, method='POST')
        req.add_header('Content-Type', 'application/json')
        req.add_header('Accept-Encoding', 'gzip')
        if self.auth:
            req.add_header('Authorization', self.auth)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                data = resp.read()
        except urllib.error.HTTPError as e:
            raise RpcError(f'HTTP {e.code}: {e.read()[:300]!r}')
        if data[:2] == b'\x1f\x8b':
            data = gzip.decompress(data)
        reply = json.loads(data)
        if reply.get('error'):
            raise RpcError(json.dumps(reply['error'])[:500])
        return reply['result']

    def login(self, user=USER, password=PASSWORD):
        result = self.call('common.db.login',
            [user, {'password': password}, 'en'])
        user_id, session = result[0], result[1]
        token = base64.b64encode(
            f'{user}:{user_id}:{session}'.encode()).decode()
        self.auth = f'Session {token}'
        return result


def dotted(row, field):
    """Value of a (dotted) field in a read/search_read row.

    Tryton returns "a.b" as a nested object under the key "a." (with "id"),
    e.g. {"move.": {"id": 1, "number": "..."}}; null when "a" is empty.
    """
    *heads, last = field.split('.')
    for head in heads:
        row = row.get(head + '.')
        if row is None:
            return None
    return row.get(last)


def wait_port(port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.closing(socket.socket()) as s:
            s.settimeout(1)
            if s.connect_ex(('127.0.0.1', port)) == 0:
                return True
        time.sleep(0.2)
    return False


def cmd_check(args):
    directory, conf, _ = paths(args.dir)
    port = args.port or read_port(conf)
    if not wait_port(port, args.wait):
        sys.exit(f'nothing listens on 127.0.0.1:{port} (run "serve")')
    out = {'url': f'http://127.0.0.1:{port}/{DB_NAME}/rpc/'}
    c = Client(port)
    out['server_version'] = _server_call(port, 'common.server.version', [])
    out['login'] = c.login()
    ctx = c.call('model.res.user.get_preferences', [True, {}])
    out['context'] = ctx
    domain = RECEIVABLE_DOMAIN
    if args.open_only:
        domain = domain + [['reconciliation', '=', None]]
    if args.since:
        # incremental pull: lines created or written since a timestamp
        # (write_date is null on lines never written after creation)
        since = dt.datetime.fromisoformat(args.since)
        since = {'__class__': 'datetime', 'year': since.year,
            'month': since.month, 'day': since.day, 'hour': since.hour,
            'minute': since.minute, 'second': since.second,
            'microsecond': since.microsecond}
        domain = domain + [['OR', ['write_date', '>=', since],
                ['create_date', '>=', since]]]
    out['domain'] = domain
    out['search_count'] = c.call('model.account.move.line.search_count',
        [domain, 0, None, ctx])
    out['lines'] = c.call('model.account.move.line.search_read',
        [domain, 0, 1000, [['id', 'ASC']], LINE_FIELDS, ctx])
    # probe extra dotted fields one by one on the same domain
    probes = {}
    for field in PROBE_FIELDS:
        try:
            rows = c.call('model.account.move.line.search_read',
                [domain, 0, 1, [['id', 'ASC']], ['id', field], ctx])
            probes[field] = {'ok': True,
                'example': dotted(rows[0], field) if rows else None}
        except RpcError as e:
            probes[field] = {'ok': False, 'error': str(e)[:200]}
    out['field_probes'] = probes
    # reconciliations: what a write_date/create_date pull would see
    out['reconciliations'] = c.call(
        'model.account.move.reconciliation.search_read',
        [[], 0, 1000, [['id', 'ASC']],
            ['id', 'rec_name', 'date', 'create_date', 'write_date', 'lines',
                'company'], ctx])
    out['invoices'] = c.call('model.account.invoice.search_read',
        [[['type', '=', 'out']], 0, 1000, [['id', 'ASC']],
            ['id', 'number', 'state', 'party.rec_name', 'total_amount',
                'amount_to_pay', 'reconciled', 'move', 'lines_to_pay',
                'payment_lines', 'write_date', 'currency.code'], ctx])
    emit(out)


def cmd_party(args):
    directory, conf, _ = paths(args.dir)
    proteus_connect(conf)
    from proteus import Model
    Party = Model.get('party.party')
    party, = Party.find([('name', '=', args.name)])
    if args.email:
        for m in party.contact_mechanisms:
            if m.type == 'email':
                m.value = args.email
                break
        else:
            party.contact_mechanisms.new(type='email', value=args.email)
    if args.drop_addresses:
        # Archived in the party's form: Tryton does not let a party's address be
        # taken away from it, and archiving is what its users do.
        for a in party.addresses:
            a.active = False
    party.save()
    emit({'party': party.rec_name, 'email': party.email,
            'addresses': len([a for a in party.addresses if a.active])})


def cmd_unblock(args):
    directory, conf, _ = paths(args.dir)
    proteus_connect(conf)
    from proteus import Model
    Invoice = Model.get('account.invoice')
    Dunning = Model.get('account.dunning')
    invoice, = Invoice.find([('number', '=', args.invoice)])
    lines = [l.id for l in invoice.lines_to_pay]
    dunnings = Dunning.find([('line', 'in', lines)])
    Dunning.delete(dunnings)
    emit({'invoice': invoice.number, 'deleted': len(dunnings)})


def cmd_notes(args):
    directory, conf, _ = paths(args.dir)
    port = read_port(conf)
    c = Client(port)
    c.login()
    ctx = c.call('model.res.user.get_preferences', [True, {}])
    notes = c.call('model.ir.note.search_read',
        [[['resource', 'like', 'party.party,%']], 0, None, [['id', 'ASC']],
            ['resource', 'message', 'create_date'], ctx])
    parties = c.call('model.party.party.search_read',
        [[], 0, None, [['id', 'ASC']], ['id', 'rec_name'], ctx])
    names = {f'party.party,{p["id"]}': p['rec_name'] for p in parties}
    emit([{'party': names.get(n['resource']), 'message': n['message']}
            for n in notes])


def _server_call(port, method, params):
    body = json.dumps({'id': 0, 'method': method, 'params': params}).encode()
    req = urllib.request.Request(f'http://127.0.0.1:{port}/rpc/', data=body,
        headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read()).get('result')


def main():
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
        format='%(asctime)s %(name)s %(levelname)s %(message)s')
    p = argparse.ArgumentParser(description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='cmd', required=True)
    s = sub.add_parser('setup')
    s.add_argument('--dir', required=True)
    s.add_argument('--port', type=int, help='default: a free port')
    s = sub.add_parser('serve')
    s.add_argument('--dir', required=True)
    s = sub.add_parser('pay')
    s.add_argument('--dir', required=True)
    s.add_argument('--invoice', required=True)
    s.add_argument('--amount')
    s.add_argument('--date', help='payment date, default today')
    s = sub.add_parser('bulk')
    s.add_argument('--dir', required=True)
    s.add_argument('--lines', type=int, default=10000)
    s.add_argument('--parties', type=int, default=950)
    s = sub.add_parser('settle')
    s.add_argument('--dir', required=True)
    s.add_argument('--count', type=int, default=10)
    s = sub.add_parser('party')
    s.add_argument('--dir', required=True)
    s.add_argument('--name', required=True)
    s.add_argument('--email')
    s.add_argument('--drop-addresses', action='store_true')
    s = sub.add_parser('unblock')
    s.add_argument('--dir', required=True)
    s.add_argument('--invoice', required=True)
    s = sub.add_parser('notes')
    s.add_argument('--dir', required=True)
    s = sub.add_parser('check')
    s.add_argument('--dir', required=True)
    s.add_argument('--port', type=int)
    s.add_argument('--wait', type=float, default=30,
        help='seconds to wait for the server port')
    s.add_argument('--open-only', action='store_true',
        help='add ["reconciliation", "=", null] to the domain')
    s.add_argument('--since', metavar='YYYY-MM-DDTHH:MM:SS',
        help='only lines with write_date or create_date >= this (UTC)')
    args = p.parse_args()
    {'setup': cmd_setup, 'serve': cmd_serve, 'pay': cmd_pay,
        'bulk': cmd_bulk, 'settle': cmd_settle, 'notes': cmd_notes,
        'party': cmd_party, 'unblock': cmd_unblock,
        'check': cmd_check}[args.cmd](args)


if __name__ == '__main__':
    main()
