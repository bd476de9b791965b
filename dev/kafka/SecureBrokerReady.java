// Readiness probe of dev/kafka/secure.sh: Kafka's own admin client, authenticated with
// the client settings file args[0], lists topics until it answers; exit 0 ready, 3 the
// broker pid args[1] exited, 2 no answer within args[2] seconds.
import java.io.FileInputStream;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;

public final class SecureBrokerReady {
  public static void main(String[] args) throws Exception {
    Properties properties = new Properties();
    try (FileInputStream in = new FileInputStream(args[0])) {
      properties.load(in);
    }
    properties.put("request.timeout.ms", "3000");
    properties.put("default.api.timeout.ms", "4000");
    long pid = Long.parseLong(args[1]);
    long deadline = System.nanoTime() + (long) (Double.parseDouble(args[2]) * 1e9);
    String problem = "no attempt was made";
    try (Admin admin = Admin.create(properties)) {
      while (System.nanoTime() < deadline) {
        if (!ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)) {
          System.err.println("broker process " + pid + " exited while starting");
          System.exit(3);
        }
        try {
          int topics = admin.listTopics().names().get(4, TimeUnit.SECONDS).size();
          System.out.println("SCRAM-SHA-512 client got metadata (" + topics + " topics)");
          System.exit(0);
        } catch (Exception e) {
          problem = String.valueOf(e.getCause() == null ? e : e.getCause());
        }
        Thread.sleep(250);
      }
    }
    System.err.println("no answer: " + problem);
    System.exit(2);
  }
}
