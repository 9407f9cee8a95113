// A console stand-in for the sysadm Qt GUI, for interoperability tests. It drives the GUI's own connection class
// (sysadm-client.cpp, linked unmodified) and prints what that class reports, one line per signal:
//   AUTHORIZED | UNAUTHORIZED | DISCONNECTED | PRIORITY <n> | REPLY <id> <json args> | EVENT <type> <json args>
// Options:
//   --host H:P            server (the class always uses wss://)
//   --user U --pass P     password login (an empty --pass from 127.0.0.1 is the GUI's local login)
//   --key F --cert F      the client's RSA key and certificate (PEM), as the GUI keeps them
//   --register            after a password login, register the certificate's key (the GUI's first-time wizard), then exit
//   --events a,b          also subscribe to these event types (dispatcher, life-preserver); system-state is always on
//   --send JSON           a request sent once authorized; may be repeated
//   --send-after TEXT     send them once an output line contains TEXT instead (the subscriptions go out after AUTHORIZED, so
//                         waiting for the replayed "EVENT system-state" puts the requests behind them)
//   --until TEXT          exit 0 once an output line contains TEXT
//   --timeout S           exit 3 after S seconds (default 60)
#include <QCoreApplication>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QSslCertificate>
#include <QSslConfiguration>
#include <QSslKey>
#include <QThreadPool>
#include <QTimer>
#include <cstdio>
#include <functional>
#include "sysadm-client.h"

// See harness.pro: every malloc of this process gets 1 KiB of slack, so that the GUI's SSL_Encode_String can write its RSA block
// (RSA_size bytes) into the 40 bytes it allocates without glibc aborting. __libc_malloc is glibc's own; free() is unchanged.
extern "C" void *__libc_malloc(size_t size);
extern "C" void *malloc(size_t size) { return __libc_malloc(size + 1024); }

// Globals the connection class expects from the GUI.
QSettings *settings = nullptr;
QSslConfiguration SSL_cfg, SSL_cfg_bridge;

static QString untilText, sendAfter;
static std::function<void()> sendNow;

static void out(const QString &line)
{
  std::fprintf(stdout, "%s\n", line.toUtf8().constData());
  std::fflush(stdout);
  if (sendNow && !sendAfter.isEmpty() && line.contains(sendAfter)) {
    auto f = sendNow; sendNow = nullptr;
    QTimer::singleShot(0, qApp, f);
  }
  if (!untilText.isEmpty() && line.contains(untilText)) {
    // The class handles each message on a thread-pool thread: let the others print before exiting.
    QTimer::singleShot(0, qApp, [] { QThreadPool::globalInstance()->waitForDone(5000); qApp->exit(0); });
  }
}

static QString compact(const QJsonValue &v)
{
  if (v.isObject()) { return QString::fromUtf8(QJsonDocument(v.toObject()).toJson(QJsonDocument::Compact)); }
  if (v.isArray()) { return QString::fromUtf8(QJsonDocument(v.toArray()).toJson(QJsonDocument::Compact)); }
  QJsonArray wrap; wrap.append(v);
  QString s = QString::fromUtf8(QJsonDocument(wrap).toJson(QJsonDocument::Compact));
  return s.mid(1, s.length() - 2);
}

static QByteArray readFile(const QString &path)
{
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) { std::fprintf(stderr, "cannot read %s\n", path.toUtf8().constData()); std::exit(2); }
  return f.readAll();
}

int main(int argc, char **argv)
{
  QCoreApplication app(argc, argv);
  QStringList a = app.arguments();
  QString host, user, pass, keyFile, certFile;
  bool hasPass = false, doRegister = false;
  QStringList events, sends;
  int timeout = 60;
  for (int i = 1; i < a.size(); i++) {
    QString o = a[i];
    auto next = [&]() { if (i + 1 >= a.size()) { std::fprintf(stderr, "%s needs a value\n", o.toUtf8().constData()); std::exit(2); } return a[++i]; };
    if (o == "--host") host = next();
    else if (o == "--user") user = next();
    else if (o == "--pass") { pass = next(); hasPass = true; }
    else if (o == "--key") keyFile = next();
    else if (o == "--cert") certFile = next();
    else if (o == "--register") doRegister = true;
    else if (o == "--events") events = next().split(',', Qt::SkipEmptyParts);
    else if (o == "--send") sends << next();
    else if (o == "--send-after") sendAfter = next();
    else if (o == "--until") untilText = next();
    else if (o == "--timeout") timeout = next().toInt();
    else { std::fprintf(stderr, "unknown option %s\n", o.toUtf8().constData()); return 2; }
  }

  if (!keyFile.isEmpty() && !certFile.isEmpty()) {
    QSslConfiguration cfg = QSslConfiguration::defaultConfiguration();
    cfg.setPrivateKey(QSslKey(readFile(keyFile), QSsl::Rsa, QSsl::Pem, QSsl::PrivateKey));
    cfg.setLocalCertificate(QSslCertificate(readFile(certFile), QSsl::Pem));
    if (cfg.privateKey().isNull() || cfg.localCertificate().isNull()) { std::fprintf(stderr, "bad key or certificate\n"); return 2; }
    SSL_cfg = cfg;
  }

  sysadm_client client;
  for (const QString &e : events) {
    if (e == "dispatcher") client.registerForEvents(sysadm_client::DISPATCHER);
    else if (e == "life-preserver") client.registerForEvents(sysadm_client::LIFEPRESERVER);
  }

  bool registered = false;
  QObject::connect(&client, &sysadm_client::clientAuthorized, [&] {
    out("AUTHORIZED");
    if (doRegister && !registered) {
      registered = true;
      client.registerCustomCert();
      return;
    }
    auto send = [&client, sends] { for (const QString &s : sends) { client.communicate(QJsonDocument::fromJson(s.toUtf8()).object()); } };
    if (sendAfter.isEmpty()) send(); else sendNow = send;
  });
  QObject::connect(&client, &sysadm_client::clientUnauthorized, [] { out("UNAUTHORIZED"); });
  QObject::connect(&client, &sysadm_client::clientDisconnected, [] { out("DISCONNECTED"); });
  QObject::connect(&client, &sysadm_client::statePriorityChanged, [](int p) { out(QString("PRIORITY %1").arg(p)); });
  // newReply's second and third arguments arrive swapped (name, namespace); only id and args are printed.
  QObject::connect(&client, &sysadm_client::newReply, [&](QString id, QString, QString, QJsonValue args) {
    out(QString("REPLY %1 %2").arg(id, compact(args)));
    if (doRegister && id == "sysadm-auto-cert-register") { QTimer::singleShot(0, &app, [&] { client.closeConnection(); app.exit(0); }); }
  });
  QObject::connect(&client, &sysadm_client::NewEvent, [](sysadm_client::EVENT_TYPE t, QJsonValue args) {
    const char *name = t == sysadm_client::DISPATCHER ? "dispatcher" : t == sysadm_client::LIFEPRESERVER ? "life-preserver" : "system-state";
    out(QString("EVENT %1 %2").arg(name, compact(args)));
  });

  QTimer::singleShot(timeout * 1000, &app, [] { out("TIMEOUT"); qApp->exit(3); });
  if (hasPass || !user.isEmpty()) client.openConnection(user, pass, host);
  else client.openConnection(host);
  return app.exec();
}
